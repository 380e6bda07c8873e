"""Fine-tuning: sequence classification and NER on top of a pretrained encoder, with reports.

`finetune` reads a labelled split (CSV, TSV, JSON lines or CoNLL), puts a small head on the
encoder of a run (or of an imported Hugging Face folder), trains everything with AdamW, a linear
warmup and a linear decay, evaluates each epoch, keeps the best epoch on the chosen metric and
writes a fine-tuning folder:

    config.yaml            FinetuneConfig (section `finetune`) and the model's ModelConfig (`model`)
    labels.json            the label map: task and labels in id order (integers stay integers)
    tokenizer/             the encoder's tokenizer
    model.safetensors      the best epoch's weights: `encoder.*` (as in a MaskedLM) and `head.*`
    metrics.json           per-epoch validation metrics, the best epoch, test metrics, baselines
    report.txt             scikit-learn classification report (classify) or seqeval report (ner)
    confusion_matrix.png   classify only: the test split's, else the validation split's

Heads. Classification follows RoBERTa's `RobertaClassificationHead`: dropout -> `head.dense` (H, H)
-> tanh -> dropout -> `head.out_proj` (H, labels), read from the first token ([CLS] / <s>).
BERT computes the same function with other names (pooler = dense + tanh on [CLS], then dropout
and `classifier`), so an export is a key mapping either way:
    RobertaForSequenceClassification: head.dense -> classifier.dense, head.out_proj -> classifier.out_proj
    BertForSequenceClassification:    head.dense -> bert.pooler.dense, head.out_proj -> classifier
Token classification (both archs): dropout -> `head.out_proj` (H, labels), exported as `classifier`.
Mean pooling (`finetune.pooling: mean`) has no Hugging Face counterpart and does not export exactly.

Batches are padded to their longest example, and training draws batches of similar lengths
(`length_grouped_batches`), so short texts cost little. The best epoch's weights are kept in
memory and written once at the end, with everything else, into a folder moved into place whole.

NER labels sit on the first piece of each word; the other pieces get IGNORE_INDEX (-100), as in
the BERT paper (section 5.3). Words are matched to pieces through the tokenizer's character
offsets, which works for every tokenizer kind (byte-level BPE, WordPiece, SentencePiece).

The package, in the order its modules import each other:
    config    FinetuneConfig, FinetuneRunConfig, task names, metrics and file names
    data      reading tables and CoNLL files, label maps, encoding, batches
    model     the heads, Classifier, loading and freezing the source encoder
    metrics   accuracy and macro F1 (classify), seqeval scores (ner)
    training  the context, training epochs, evaluation, the best-epoch fit
    report    report text, confusion matrix picture, baselines
    loop      the whole run: `finetune`, `write_folder`, `comparison_table`
    predict   `load_finetuned`, `predict`, reading inputs and writing predictions
"""

from .config import CONFIG_FILE, LABELS_FILE, MODEL_FILE, FinetuneConfig, FinetuneRunConfig
from .data import (
    ClassifyData,
    NerData,
    encode_classification,
    encode_words,
    first_pieces,
    join_words,
    token_labels,
    truncating,
)
from .loop import comparison_table, finetune
from .predict import Finetuned, load_finetuned, predict, read_predict_input, to_json_text, write_predictions

__all__ = [
    "CONFIG_FILE",
    "LABELS_FILE",
    "MODEL_FILE",
    "ClassifyData",
    "FinetuneConfig",
    "FinetuneRunConfig",
    "Finetuned",
    "NerData",
    "comparison_table",
    "encode_classification",
    "encode_words",
    "finetune",
    "first_pieces",
    "join_words",
    "load_finetuned",
    "predict",
    "read_predict_input",
    "to_json_text",
    "token_labels",
    "truncating",
    "write_predictions",
]
