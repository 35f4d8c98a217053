"""Perception: speech in (recognition), speech out (synthesis), and reading images (OCR).

Engines are plugins (`llmasos.plugins.PluginRegistry.register_perception_engine`); the
built-in ones are pocketsphinx (speech to text), espeak-ng (text to speech) and tesseract
(OCR), registered the way an outside package would register a whisper or a neural voice.
`media` decodes and encodes audio and sniffs what an uploaded file is; `jobs` runs the
engines' CPU-bound work fairly between tenants. This package sits beside tools and the
toolchain: it may import the kernel, services, storage and the shared modules (config,
errors, net, plugins, types), never a face (server, cli, webui). Heavy libraries (PyAV,
pocketsphinx, Pillow) are imported only when an engine first runs.
"""
