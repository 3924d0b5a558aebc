"""The models shipped in the package (README.md here): their paths, without importing torch."""

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
#: the torch model file (:func:`mpe_ssl.pretrained.load_model`): what ``mpe-ssl transcribe``
#: runs with torch (``--engine torch``, a GPU, ``--batch``, ``--precision bfloat16``)
TRANSCRIBER = FOLDER / "transcriber.pt"
#: the same model as ONNX Runtime graphs (:mod:`mpe_ssl.onnx_model`), exported from
#: :data:`TRANSCRIBER` by ``mpe-ssl export-onnx``: what ``mpe-ssl transcribe`` runs on a CPU
TRANSCRIBER_ONNX = FOLDER / "transcriber-onnx"
