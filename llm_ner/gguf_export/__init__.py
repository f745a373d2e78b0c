"""GGUF for llama.cpp and Ollama: a fine-tuned model converted by llama.cpp's own converter.

- `converter`: llama.cpp's ``convert_hf_to_gguf.py`` (found, or fetched from the llama-cpp-python sdist), run
  on a Hugging Face folder; GGUF metadata written (``llm_ner.*``) and read back with the ``gguf`` package;
- `modelfile`: the Ollama ``Modelfile`` beside a GGUF, and a parser that reads it as Ollama does;
- `export`: `llm-ner export-model` (`ExportOptions`, `export_model`): merge, convert, metadata, Modelfile, card.

The model card every model folder gets lives with training (`llm_ner.training.model_card`), the earlier stage.
Nothing here imports the optional ``gguf`` package or llama-cpp-python at import time: without the ``[gguf]``
extra the command stops with one line naming it.
"""
