"""KV caches for Hugging Face `transformers` built on the registered codecs, and their evaluation on real models."""
