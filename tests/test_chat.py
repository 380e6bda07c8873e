"""`bertforge chat`: typed into a pseudo-terminal as a user would, and its history kept within the context."""

import sys

import pytest

from bertforge.chat import Chat
from bertforge.generation import Sampling, generate
from bertforge.infer import load_run
from bertforge.tokenizer import load_tokenizer
from conftest import REPO, make_causal_run

pexpect = pytest.importorskip("pexpect")


@pytest.fixture(scope="module")
def chat_run(data_dir, tmp_path_factory):
    """A causal run with random weights and a dialogue template."""
    tokenizer = load_tokenizer(data_dir / "tokenizer")
    return make_causal_run(tmp_path_factory.mktemp("chat") / "run", tokenizer, template="User: {prompt}\nAgent: {response}")


def test_chat_in_a_terminal_answers_resets_and_quits(chat_run):
    env = {"PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1", "TERM": "dumb"}
    args = ["-m", "bertforge", "chat", str(chat_run), "--temperature", "0", "--max-new-tokens", "6"]
    child = pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=60, cwd=str(REPO))
    try:
        child.expect("/reset clears the history, /quit leaves")
        child.expect_exact("you> ")
        child.sendline("Where is my parcel?")
        child.expect(r"bot> (.*?)\r\n")
        first = child.match.group(1)
        expected = generate(load_run(chat_run, device="cpu"), "Where is my parcel?", max_new_tokens=6, temperature=0)
        assert first == expected["text"]  # the first turn has no history: the same as `generate`
        child.expect_exact("you> ")
        child.sendline("/reset")
        child.expect_exact("(history cleared)")
        child.expect_exact("you> ")
        child.sendline("Where is my parcel?")
        child.expect(r"bot> (.*?)\r\n")
        assert child.match.group(1) == first  # after /reset the model sees the same context again
        child.expect_exact("you> ")
        child.sendline("parcel " * 60)  # longer than the 48-token context
        child.expect("error: the prompt is \\d+ tokens")
        child.expect_exact("you> ")
        child.sendline("/help")
        child.expect("unknown command /help")
        child.expect_exact("you> ")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before


def test_history_drops_the_oldest_turns_to_fit_the_context(chat_run):
    run = load_run(chat_run, device="cpu")
    chat = Chat(run, Sampling(max_new_tokens=8, temperature=0))
    limit = run.config.model.max_seq_len  # 48
    for i in range(6):
        chat.reply(f"question {i}")
        prompt = chat.run.tokenizer.encode("User: next\nAgent:", add_special_tokens=False)
        context = chat.context(prompt)
        assert len(context) + 8 <= limit
        assert context[0] == run.tokenizer.bos_id and context[-len(prompt) :] == prompt
    assert 0 < len(chat.turns) < 6  # older turns were dropped, the latest kept
    last = run.tokenizer.decode(chat.turns[-1])
    assert last.startswith("User: question 5\nAgent:")
    chat.reset()
    assert chat.turns == []
