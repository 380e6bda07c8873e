"""The TF-IDF + logistic regression baseline is tuned on the validation split, never on the test split."""

from bertforge.finetune.config import FinetuneRunConfig
from bertforge.finetune.data import ClassifyData
from bertforge.finetune.report import TFIDF_C, TFIDF_FEATURES, tfidf_baseline

LABELS = [0, 1]
# Label 1 words end in "-ful", label 0 words end in "-less": char n-grams see the suffix in unseen words,
# word n-grams only know the words seen in training.
TRAIN_WORDS = {1: ["joyful", "hopeful", "careful", "playful", "grateful", "peaceful"],
               0: ["joyless", "hopeless", "careless", "pointless", "helpless", "fearless"]}
UNSEEN_WORDS = {1: ["mindful", "restful", "tuneful", "fruitful", "colourful", "wishful"],
                0: ["mindless", "restless", "tuneless", "fruitless", "colourless", "wishless"]}


def split(words: dict) -> tuple[ClassifyData, list[int]]:
    texts = [f"the {w} day" for label in (0, 1) for w in words[label]]
    gold = [label for label in (0, 1) for _ in words[label]]
    return ClassifyData(texts=texts, pairs=None, labels=gold), gold


def baseline(validation, test) -> dict:
    train, train_ids = split(TRAIN_WORDS)
    return tfidf_baseline(train, train_ids, {"validation": validation, "test": test}, FinetuneRunConfig(), LABELS)


def test_tfidf_setting_is_chosen_on_validation_and_follows_it():
    seen, unseen = split(TRAIN_WORDS), split(UNSEEN_WORDS)
    # Validation of unseen words: only char n-grams generalise, so they are chosen (and score perfectly).
    on_unseen = baseline(validation=unseen, test=seen)
    assert on_unseen["setting"]["features"] == "char_wb 2-5"
    assert on_unseen["setting"]["chosen_on"] == "validation"
    assert on_unseen["validation"]["accuracy"] == 1.0
    # Swap the splits: every setting is perfect on seen words, so the tie keeps the first grid point,
    # even though that setting is worse on the (now test) unseen words.
    on_seen = baseline(validation=seen, test=unseen)
    assert on_seen["setting"] == {"features": "word 1-2", "C": TFIDF_C[0], "chosen_on": "validation",
                                  "metric": "accuracy"}
    assert on_seen["validation"]["accuracy"] == 1.0
    assert on_seen["test"]["accuracy"] < on_unseen["validation"]["accuracy"]
    assert list(TFIDF_FEATURES)[0] == "word 1-2"


def test_tfidf_baseline_is_deterministic():
    unseen, seen = split(UNSEEN_WORDS), split(TRAIN_WORDS)
    assert baseline(unseen, seen) == baseline(unseen, seen)
