"""Hugging Face BERT / RoBERTa / RoBERTa-PreLayerNorm folder -> a bertforge run (config.yaml, tokenizer/,
a step-0 checkpoint), so `fill-mask`, `evaluate`, `export` and `pretrain --init-from` work on it.

Weights are read from safetensors, or from a legacy pytorch_model.bin with `weights_only=True`
(a file that would run code is refused, never executed).
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import torch

from .. import files
from ..checkpoint import (
    MODEL_FILE,
    checkpoint_dir,
    latest_intact_checkpoint,
    write_checkpoint_files,
)
from ..config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TokenizerConfig,
    TrainConfig,
    save_config,
)
from ..errors import DataError
from ..finite import check_finite_model
from ..folders import HF, RUN, folder_kind
from ..tokenizer import TextTokenizer, load_tokenizer
from .keys import from_hf_state_dict, model_class, model_config_from_hf

log = logging.getLogger(__name__)

IMPORT_FILE = "import.json"  # in a run made by `import_hf`: where its weights came from


def import_hf(hf_dir: str | Path, out_run: str | Path) -> Path:
    """Turn a BERT/RoBERTa/RoBERTa-PreLayerNorm masked-LM folder into a bertforge run: config.yaml,
    tokenizer/, a step-0 checkpoint.

    `load_run`, `fill-mask`, `evaluate`, `export` and `pretrain --init-from` then work on it.
    """
    hf_dir, out_run = Path(hf_dir), Path(out_run)
    files.refuse_foreign_dir(out_run, IMPORT_FILE, "an imported run (it would be replaced)")
    hf_cfg = read_hf_config(hf_dir)
    cfg, arch = model_config_from_hf(hf_cfg), hf_cfg["model_type"]
    weights, weights_file = read_hf_weights(hf_dir)
    state = from_hf_state_dict(weights, cfg, arch, source=str(weights_file))
    state = {k: v.float() for k, v in state.items()}  # fp32 master weights, as training keeps them
    check_finite_model(state, weights_file)
    tokenizer = import_tokenizer(hf_dir)
    _check_tokenizer_fits(tokenizer, cfg, hf_dir)
    run_cfg = RunConfig(
        tokenizer=TokenizerConfig(tokenizer.kind, tokenizer.vocab_size, special_tokens=tokenizer.scheme),
        data=DataConfig(seq_len=min(DataConfig.seq_len, cfg.max_seq_len)),
        model=cfg,
        # continued pretraining keeps the objective (a BertForPreTraining checkpoint: MLM + NSP)
        train=TrainConfig(objective="clm" if cfg.causal else "mlm+nsp" if cfg.sentence_head else "mlm"),
    )
    _write_imported_run(out_run, run_cfg, tokenizer, state, {"source": str(hf_dir.resolve()), "model_type": arch})
    count = sum(v.numel() for v in state.values())
    log.info("imported %s (%s, %s parameters) -> %s", hf_dir, model_class(cfg, arch), f"{count:,}", out_run)
    return out_run


def init_run(path: str | Path, scratch: str | Path) -> Path:
    """A run folder for `pretrain --init-from PATH`: PATH if it is a run, else PATH imported into `scratch`."""
    path = Path(path)
    if folder_kind(path, (RUN, HF), "--init-from") == RUN:
        checkpoint = latest_intact_checkpoint(path)
        check_finite_model(files.load_tensors(checkpoint / MODEL_FILE), checkpoint)  # never train from NaN
        return path
    return import_hf(path, scratch)


def read_hf_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    if not hf_dir.is_dir():
        raise DataError(f"{hf_dir} is not a folder; give a Hugging Face model folder (config.json, model.safetensors)")
    if not path.is_file():
        raise DataError(f"{hf_dir} is not a Hugging Face model folder (no config.json)")
    hf_cfg = files.read_json_file(path, "is it a Hugging Face config.json?")
    if not isinstance(hf_cfg, dict):
        raise DataError(f"{path}: expected a JSON object")
    return hf_cfg


def read_hf_weights(hf_dir: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The checkpoint's tensors: model.safetensors (or its shards), else pytorch_model.bin read without running code."""
    single, index = hf_dir / "model.safetensors", hf_dir / "model.safetensors.index.json"
    if single.is_file():
        return _load_safetensors(single), single
    if index.is_file():
        shards = sorted(set(_read_index(index).values()))
        return {k: v for shard in shards for k, v in _load_safetensors(hf_dir / shard).items()}, index
    pickled = hf_dir / "pytorch_model.bin"
    if pickled.is_file():
        return _load_pickled_weights(pickled), pickled
    raise DataError(f"{hf_dir}: no model.safetensors (or pytorch_model.bin); it holds no model weights")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path}: missing (listed in the safetensors index)")
    try:
        return files.load_tensors(path)
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise DataError(f"{path}: not a valid safetensors file ({_first_line(e)})") from None


def _read_index(path: Path) -> dict[str, str]:
    try:
        return dict(files.read_json(path)["weight_map"])
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path}: not a valid safetensors index (no weight_map)") from None


def _load_pickled_weights(path: Path) -> dict[str, torch.Tensor]:
    """A legacy pytorch_model.bin, read with `weights_only=True`: tensors and plain containers only,
    so a file that would run code when unpickled is refused, never executed."""
    log.info("%s: reading a legacy pickle checkpoint with torch.load(weights_only=True)", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for a forbidden global, RuntimeError/EOFError for junk
        # torch's message suggests weights_only=False; keep only the reason ("Unsupported global: ...").
        found = re.search(r"WeightsUnpickler error: ([^\n.]*)", str(e))
        reason = found.group(1) if found else _first_line(e)
        raise DataError(f"{path}: refused, not a plain tensor checkpoint ({reason}); convert it to model.safetensors") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: not a state dict of tensors; convert it to model.safetensors")
    return state


def import_tokenizer(hf_dir: Path) -> TextTokenizer:
    """The folder's tokenizer.json, or one converted by transformers from vocab.txt / vocab.json + merges.txt."""
    if (hf_dir / "tokenizer.json").is_file():
        return load_tokenizer(hf_dir / "tokenizer.json")
    if not any((hf_dir / name).is_file() for name in ("vocab.txt", "vocab.json")):
        raise DataError(f"{hf_dir}: no tokenizer (tokenizer.json, vocab.txt or vocab.json); the model needs one")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        need = "converting its vocab files needs transformers: pip install 'bertforge[hf]'"
        raise DataError(f"{hf_dir} has no tokenizer.json; {need}") from None
    try:
        backend = AutoTokenizer.from_pretrained(str(hf_dir)).backend_tokenizer
    except (OSError, ValueError) as e:
        raise DataError(f"{hf_dir}: its tokenizer files cannot be read ({_first_line(e)})") from None
    with tempfile.TemporaryDirectory() as tmp:  # load_tokenizer infers kind and scheme from a file
        path = Path(tmp) / "tokenizer.json"
        path.write_text(backend.to_str(), encoding="utf-8")
        return load_tokenizer(path)


def _check_tokenizer_fits(tokenizer: TextTokenizer, cfg: ModelConfig, hf_dir: Path) -> None:
    if tokenizer.vocab_size != cfg.vocab_size:
        raise DataError(
            f"{hf_dir}: the tokenizer has {tokenizer.vocab_size} tokens but config.json says vocab_size "
            f"{cfg.vocab_size}; bertforge needs them equal"
        )
    if tokenizer.pad_id != cfg.pad_id:
        raise DataError(f"{hf_dir}: the tokenizer's pad id is {tokenizer.pad_id}, config.json's pad_token_id {cfg.pad_id}")


def _write_imported_run(out_run: Path, cfg: RunConfig, tokenizer: TextTokenizer, state: dict, source: dict) -> None:
    """The run folder, built beside `out_run` and moved into place."""
    with files.atomic_dir(out_run) as tmp:
        save_config(tmp / "config.yaml", cfg)
        tokenizer.save(tmp / "tokenizer")
        step0 = {"step": 0, "batches": 0, "tokens": 0, "elapsed_s": 0.0}
        write_checkpoint_files(checkpoint_dir(tmp, 0), state, step0)
        files.write_json(tmp / IMPORT_FILE, source)
