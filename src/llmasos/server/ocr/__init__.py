"""``POST /v1/ocr``: the printed text of an image, with word boxes and confidences."""
