"""Hugging Face interop, one module per job (the package itself imports nothing, so its modules can
sit in different layers):

  keys.py      the key tables (ours <-> BERT / RoBERTa / RoBERTa-PreLayerNorm, both ways), config.json
  importer.py  a Hugging Face folder -> a bertforge run
  exporter.py  a run or fine-tuned folder -> a Hugging Face folder
  card.py      the exported folder's README.md model card
"""
