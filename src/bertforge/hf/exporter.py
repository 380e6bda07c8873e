"""Write a run (or a fine-tuned folder) as a Hugging Face model folder that `from_pretrained` reads offline.

config.json, model.safetensors, tokenizer files and a README.md model card (hf/card.py), built in
a temporary folder and moved into place whole. The names come from the key tables in hf/keys.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .. import files
from ..errors import DataError
from ..finetune.predict import load_finetuned
from ..finite import check_finite_model
from ..folders import FINETUNED, HF_CONFIG, RUN, folder_kind
from ..infer import load_run
from .card import model_card
from .keys import (
    TASK_HEADS,
    check_exportable,
    default_arch,
    exports_sentence_head,
    hf_config,
    model_class,
    to_hf_state_dict,
    tokenizer_files,
)

log = logging.getLogger(__name__)


def finetuned_to_hf(ft, arch: str) -> tuple[dict[str, torch.Tensor], dict]:
    """A fine-tuned model (finetune.load_finetuned) -> HF tensors and config.json with id2label."""
    task, cfg = ft.config.finetune.task, ft.config.model
    if ft.config.finetune.pooling != "cls":
        raise DataError(f"this classifier uses {ft.config.finetune.pooling} pooling, which transformers' "
                        "...ForSequenceClassification cannot express; only cls pooling can be exported")
    hf_class, head = TASK_HEADS[(arch, task)]
    state = ft.model.state_dict()
    tensors = to_hf_state_dict(state, cfg, arch, mlm_head=False)
    for ours, theirs in head.items():
        for w in ("weight", "bias"):
            tensors[f"{theirs}.{w}"] = state[f"{ours}.{w}"].contiguous()
    config = {**hf_config(cfg, ft.tokenizer, arch, mlm_head=False), "architectures": [hf_class]}
    config["id2label"] = {str(i): str(label) for i, label in enumerate(ft.labels)}
    config["label2id"] = {str(label): i for i, label in enumerate(ft.labels)}
    if task == "classify":
        config["problem_type"] = "single_label_classification"
    return tensors, config


# ---------------------------------------------------------------- export a run


def export_run(run_dir: str | Path, out_dir: str | Path, arch: str | None = None) -> Path:
    """Write a run's latest checkpoint (or a fine-tuned model) as a Hugging Face model folder,
    replaced whole, never half-written."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    kind = folder_kind(run_dir, (RUN, FINETUNED), "export:")
    files.refuse_foreign_dir(out_dir, HF_CONFIG, "a Hugging Face model folder")
    if kind == FINETUNED:
        return export_finetuned(run_dir, out_dir, arch)
    run = load_run(run_dir, device="cpu")
    cfg, tokenizer = run.config.model, run.tokenizer
    arch = arch or default_arch(tokenizer, cfg)
    check_exportable(cfg, arch)
    with files.atomic_dir(out_dir) as tmp:
        tensors = to_hf_state_dict(run.model.state_dict(), cfg, arch)
        files.save_tensors(tmp / "model.safetensors", tensors, metadata={"format": "pt"})  # HF checks "format"
        files.write_json(tmp / "config.json", hf_config(cfg, tokenizer, arch))
        files.atomic_write_text(tmp / "tokenizer.json", tokenizer.tokenizer.to_str(pretty=True))
        for name, content in tokenizer_files(tokenizer, cfg, arch).items():
            files.write_json(tmp / name, content)
        files.atomic_write_text(tmp / "README.md", model_card(run_dir, run.config, run.checkpoint, arch, out_dir.name))
    if cfg.sentence_head and not exports_sentence_head(cfg, arch):
        log.warning("%s has no sentence-pair head: the pooler and NSP/SOP head are left out (use --arch bert "
                    "for BertForPreTraining)", model_class(cfg, arch))
    log.info("exported %s (%s) as %s -> %s", run_dir, run.checkpoint.name, model_class(cfg, arch), out_dir)
    return out_dir


def export_finetuned(ft_dir: Path, out_dir: Path, arch: str | None) -> Path:
    """A fine-tuning folder as `...ForSequenceClassification` / `...ForTokenClassification`."""
    ft = load_finetuned(ft_dir, device="cpu")
    check_finite_model(ft.model, ft_dir)
    arch = arch or default_arch(ft.tokenizer, ft.config.model, with_head=False)
    tensors, config = finetuned_to_hf(ft, arch)
    with files.atomic_dir(out_dir) as tmp:
        files.save_tensors(tmp / "model.safetensors", tensors, metadata={"format": "pt"})
        files.write_json(tmp / "config.json", config)
        files.atomic_write_text(tmp / "tokenizer.json", ft.tokenizer.tokenizer.to_str(pretty=True))
        for name, content in tokenizer_files(ft.tokenizer, ft.config.model, arch).items():
            files.write_json(tmp / name, content)
    log.info("exported %s as %s -> %s", ft_dir, config["architectures"][0], out_dir)
    return out_dir
