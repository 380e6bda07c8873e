// The bertforge page: asks /api/info which panels apply to the served model, then builds one
// section per panel with that panel's function from PANELS. A new panel is one entry here plus
// its name in ServedModel.panels (app.py) and its endpoint. All text goes in as textContent.
"use strict";

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;

// Horizontal probability bars: items are [{label, score}], score in [0, 1].
function bars(items) {
  const box = el("div", { class: "bars" });
  for (const { label, score } of items) {
    const fill = el("span", { class: "bar-fill" });
    fill.style.width = percent(Math.max(0, Math.min(1, score)));
    box.append(el("div", { class: "bar" },
      el("span", { class: "bar-label", text: label, title: label }),
      el("span", { class: "bar-track" }, fill),
      el("span", { class: "bar-value", text: percent(score) })));
  }
  return box;
}

// A form row: inputs, a button; `run` gets the result box and returns a promise.
function form(section, fields, buttonText, run) {
  const result = el("div", { class: "result", "aria-live": "polite" });
  const button = el("button", { type: "submit", text: buttonText });
  const f = el("form", {}, el("div", { class: "row" }, ...fields, button));
  f.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    result.replaceChildren(el("p", { class: "hint", text: "thinking…" }));
    try {
      await run(result);
    } catch (error) {
      result.replaceChildren(el("p", { class: "error", text: error.message }));
    } finally {
      button.disabled = false;
    }
  });
  section.append(f, result);
}

function topK(value) {
  return el("input", { type: "number", min: "1", max: "20", value: String(value), title: "how many answers", "aria-label": "top k" });
}

const PANELS = {
  "fill-mask": {
    title: "Fill in the mask",
    setup(section, info) {
      const mask = info.tokenizer.mask_token;
      section.append(el("p", { class: "hint", text: `Write ${mask} where a word is missing (${mask === "<mask>" ? "[MASK]" : "<mask>"} works too).` }));
      const text = el("input", { type: "text", id: "fill-mask-text", value: `The ${mask} of pure reason.`, "aria-label": "sentence" });
      const k = topK(5);
      form(section, [text, k], "Fill", async (result) => {
        const data = await api("/api/fill-mask", { text: text.value, top_k: Number(k.value) });
        result.replaceChildren(...data.masks.map((answers, i) => el("div", { class: "mask" },
          el("h3", { text: data.masks.length > 1 ? `mask ${i + 1}` : "most likely words" }),
          bars(answers.map((a) => ({ label: a.token, score: a.score }))))));
      });
    },
  },

  generate: {
    title: "Generate",
    setup(section, info) {
      section.append(el("p", { class: "hint", text: "A causal LM continues the prompt (wrapped in the run's template, if it has one). Temperature 0 is greedy." }));
      const text = el("textarea", { id: "generate-text", rows: "3", "aria-label": "prompt" });
      text.value = "Give three tips for staying healthy.";
      const number = (id, value, attrs) => el("input", { type: "number", id, value: String(value), ...attrs });
      const steps = number("generate-steps", 48, { min: "1", max: String(info.limits.max_new_tokens), title: "new tokens", "aria-label": "new tokens" });
      const temperature = number("generate-temperature", 0.8, { min: "0", step: "0.1", title: "temperature", "aria-label": "temperature" });
      const topP = number("generate-top-p", 0.95, { min: "0.01", max: "1", step: "0.05", title: "top-p", "aria-label": "top p" });
      form(section, [text, steps, temperature, topP], "Generate", async (result) => {
        const data = await api("/api/generate", {
          text: text.value, max_new_tokens: Number(steps.value), temperature: Number(temperature.value), top_p: Number(topP.value),
        });
        result.replaceChildren(el("pre", { class: "generated", id: "generate-output", text: data.text }),
          el("p", { class: "hint", text: `${data.token_ids.length} tokens, stopped: ${data.stop_reason}, seed ${data.seed}` }));
      });
    },
  },

  classify: {
    title: "Classify",
    setup(section, info) {
      section.append(el("p", { class: "hint", text: `Labels: ${info.labels.join(", ")}` }));
      const text = el("input", { type: "text", id: "classify-text", value: "a gripping, funny film", "aria-label": "text" });
      const fields = [text];
      const pair = el("input", { type: "text", id: "classify-pair", placeholder: "second text of the pair", "aria-label": "second text" });
      if (info.text_pair) fields.push(pair);
      form(section, fields, "Classify", async (result) => {
        const body = info.text_pair ? { text: text.value, text_pair: pair.value } : { text: text.value };
        const data = await api("/api/classify", body);
        const items = Object.entries(data.probabilities).map(([label, score]) => ({ label, score }));
        items.sort((a, b) => b.score - a.score);
        result.replaceChildren(el("h3", { text: `label: ${data.label}` }), bars(items));
      });
    },
  },

  tag: {
    title: "Tag words (named entities)",
    setup(section, info) {
      section.append(el("p", { class: "hint", text: `Tags: ${info.labels.join(", ")}` }));
      const text = el("input", { type: "text", id: "tag-text", value: "John Smith flew from London to Paris.", "aria-label": "text" });
      form(section, [text], "Tag", async (result) => {
        const data = await api("/api/tag", { text: text.value });
        const entities = data.entities.map((e) => ({ label: `${e.type}: ${e.text}`, score: e.score }));
        result.replaceChildren(
          el("h3", { text: entities.length ? "entities" : "no entities found" }), bars(entities),
          el("p", { class: "hint", text: data.tags.map((t) => `${t.word}/${t.tag}`).join("  ") }));
      });
    },
  },

  similarity: {
    title: "Sentence similarity",
    setup(section) {
      section.append(el("p", { class: "hint", text: "Cosine of the two sentences' mean-pooled final hidden states." }));
      const a = el("input", { type: "text", id: "similarity-a", value: "Space is a pure form of intuition.", "aria-label": "first sentence" });
      const b = el("input", { type: "text", id: "similarity-b", value: "Time is a pure form of sensibility.", "aria-label": "second sentence" });
      form(section, [a, b], "Compare", async (result) => {
        const data = await api("/api/similarity", { a: a.value, b: b.value });
        result.replaceChildren(el("p", { class: "big", id: "similarity-value", text: data.cosine.toFixed(3) }),
          el("p", { class: "hint", text: "1 = same direction, 0 = unrelated, -1 = opposite" }));
      });
    },
  },

  neighbours: {
    title: "Embedding neighbours",
    setup(section) {
      section.append(el("p", { class: "hint", text: "Tokens whose input embeddings are closest (cosine) to a word's." }));
      const word = el("input", { type: "text", id: "neighbours-word", value: "reason", "aria-label": "word" });
      const k = topK(10);
      form(section, [word, k], "Find", async (result) => {
        const data = await api("/api/neighbours", { word: word.value, top_k: Number(k.value) });
        result.replaceChildren(bars(data.neighbours.map((n) => ({ label: n.token, score: Math.max(0, n.score) }))),
          el("p", { class: "hint", text: "bars show the cosine similarity" }));
      });
    },
  },

  info: {
    title: "Model",
    setup(section, info) {
      const rows = [
        ["kind", info.kind],
        ["parameters", info.model.parameters.toLocaleString("en")],
        ["shape", `${info.model.layers} layers, hidden ${info.model.hidden_size}, ${info.model.heads} heads, ${info.model.norm}-LN`],
        ["vocabulary", `${info.model.vocab_size.toLocaleString("en")} tokens (${info.tokenizer.kind})`],
        ["positions", String(info.model.max_seq_len)],
      ];
      if (info.training && info.training.step !== undefined) {
        rows.push(["trained", `${info.training.step.toLocaleString("en")} steps, ${info.training.tokens.toLocaleString("en")} tokens`]);
      }
      for (const [key, value] of Object.entries(info.metrics || {})) {
        if (typeof value === "number" && key !== "step") rows.push([key, Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(4)]);
      }
      section.append(el("table", { class: "facts" }, ...rows.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v })))));
      if (info.curves) section.append(el("img", { class: "curves", src: "/api/curves.png", alt: "training curves" }));
    },
  },
};

async function main() {
  const panels = document.getElementById("panels");
  try {
    const info = await api("/api/info");
    document.getElementById("model-name").textContent = info.name;
    document.getElementById("model-summary").textContent =
      `${info.kind} model, ${info.model.parameters.toLocaleString("en")} parameters`;
    for (const name of info.panels) {
      const panel = PANELS[name];
      if (!panel) continue; // a panel this page does not know yet
      const section = el("section", { class: "panel", id: `panel-${name}` }, el("h2", { text: panel.title }));
      panels.append(section);
      panel.setup(section, info);
    }
  } catch (error) {
    panels.replaceChildren(el("p", { class: "error", text: `cannot reach the model: ${error.message}` }));
  }
}

main();
