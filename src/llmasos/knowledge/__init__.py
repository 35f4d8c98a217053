"""Knowledge: documents a user gives the OS, made searchable and citable.

`convert` turns uploaded bytes (text, Markdown, HTML, PDF, Word) into text with its structure;
`chunking` cuts that text into overlapping chunks that follow headings and paragraphs. Knowledge
bases build on them: `files` (uploads as content-addressed blobs), `stores` (vector stores:
files chunked, embedded through the kernel's embed syscall and indexed in the shared hybrid
index; chunk editing; search with OpenAI's attribute filters from `filters`), `ingest` (the
background indexing jobs) and `citations` (grounded answers with numbered citations). The
semantic file system is `filesystem.FileSystem` (per-user versioned files over
content-addressed blobs, indexed in the same transaction as each version), with `fsversions`
(versions and that transaction), `fsindex` (what a version indexes), `fspaths` (path rules),
`fstypes` (its values and errors) and `fsplan` (instructions turned into checked plans of file
operations). The knowledge graph will build on the same pieces. The package knows nothing of
HTTP: ``server/openai/files``, ``server/openai/vector_stores``, ``server/fs``, ``llmasos kb``
and ``llmasos fs`` are faces over it.

May import: retrieval, the kernel's interface and client, access, storage, the model store's
blob files (`llmasos.models.blobs`) and the shared modules (config, errors, types) — never
services, server, cli or apps.
"""
