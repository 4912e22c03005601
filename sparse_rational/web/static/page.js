/* sparse-rational: the interactive page (DOM). Scores with the embedded model
 * (SparseRational, scorer.js) or, on the page a server sends, through its POST /explain.
 *
 * Test hooks (fixed): opened with #text=<URL-encoded text>, the page scores that text on
 * load and writes <output id="prediction" data-label="..." data-probabilities='{...}'>;
 * with #texts=<URL-encoded JSON list of texts> it writes every result, as JSON, into
 * <output id="predictions" data-results='[{"label": ..., "probabilities": {...}, ...}, ...]'>
 * (one page load for many texts; the embedded page writes each text's whole explanation,
 * in the shape of the server's POST /explain, the page a server sends its POST /predict rows).
 * Both outputs also get data-ms: milliseconds from the start of navigation to the (first) result;
 * #prediction also data-score-ms: how long the last scoring took (tokenize, score, explain, draw).
 */
"use strict";

(function () {
  var byId = function (id) {
    return document.getElementById(id);
  };
  var cfg = JSON.parse(byId("page-config").textContent);
  var PALETTE = cfg.palette,
    LIGHT = cfg.light;
  var MAX_SHOWN = 3000; // tokens drawn in the text view
  var model = null;
  var loadError = null;
  if (cfg.mode === "embedded") {
    try {
      model = SparseRational.loadModel(JSON.parse(byId("model-data").textContent));
    } catch (err) {
      loadError = err;
    }
  }

  function color(j) {
    return PALETTE[j % PALETTE.length];
  }
  function light(j) {
    return LIGHT[j % LIGHT.length];
  }
  function fmt(x, digits) {
    if (x === null || x === undefined || !isFinite(x)) return String(x);
    return (x >= 0 ? "+" : "") + x.toFixed(digits === undefined ? 4 : digits);
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs)
      Object.keys(attrs).forEach(function (k) {
        if (k === "style") node.style.cssText = attrs[k];
        else node.setAttribute(k, attrs[k]);
      });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function postJson(path, body, signal) {
    return fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: signal,
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error(data.error || "HTTP " + r.status);
        return data;
      });
    });
  }

  function explainText(text, signal) {
    if (model) return Promise.resolve(SparseRational.explain(model, text));
    if (cfg.mode === "api") return postJson("explain", { text: text }, signal);
    return Promise.reject(loadError || new Error("no model"));
  }

  function predictTexts(texts) {
    if (model)
      return Promise.resolve(
        texts.map(function (t) {
          return SparseRational.explain(model, t);
        })
      );
    if (cfg.mode === "api")
      return postJson("predict", { texts: texts }).then(function (r) {
        return r.predictions;
      });
    return Promise.reject(loadError || new Error("no model"));
  }

  // positions of a path's main-path transitions and self-loops (states: -1 = not read)
  function roles(states) {
    var trans = [],
      loops = [],
      prev = 0;
    for (var t = 0; t < states.length; t++) {
      var s = states[t];
      if (s < 0) continue;
      if (s > prev) trans.push(t);
      else if (s > 0) loops.push(t);
      prev = s;
    }
    return { trans: trans, loops: loops };
  }

  function phrase(tokens, p) {
    var cell = el("span", { class: "tok" });
    var r = roles(p.states);
    var consumed = r.trans.concat(r.loops).sort(function (a, b) {
      return a - b;
    });
    var isTrans = new Set(r.trans);
    var shown = consumed.length > 12 ? consumed.slice(0, 5).concat([-1], consumed.slice(-5)) : consumed;
    shown.forEach(function (t) {
      if (t < 0) {
        cell.appendChild(el("span", { class: "sl" }, "\u2026 "));
        return;
      }
      if (isTrans.has(t)) cell.appendChild(el("b", null, tokens[t]));
      else cell.appendChild(el("span", { class: "sl", title: "self-loop" }, tokens[t] + "_SL"));
      cell.appendChild(document.createTextNode(" "));
    });
    cell.appendChild(el("span", { class: "muted" }, "(" + fmt(p.score, 3) + ")"));
    return cell;
  }

  var last = null; // the explanation shown
  var focus = null; // the WFSA whose path alone is highlighted (null: all)

  function drawTokens() {
    var box = byId("tokens");
    box.textContent = "";
    if (!last) return;
    var tokens = last.tokens;
    var n = Math.min(tokens.length, MAX_SHOWN);
    var marks = tokens.slice(0, n).map(function () {
      return [];
    });
    last.wfsas.forEach(function (w) {
      if (focus !== null && w.wfsa !== focus) return;
      var r = roles(w.best.states);
      r.trans.forEach(function (t, i) {
        if (t < n) marks[t].push([w.wfsa, true, "pattern " + (w.wfsa + 1) + ": transition " + (i + 1)]);
      });
      r.loops.forEach(function (t) {
        if (t < n) marks[t].push([w.wfsa, false, "pattern " + (w.wfsa + 1) + ": self-loop"]);
      });
    });
    var frag = document.createDocumentFragment();
    for (var t = 0; t < n; t++) {
      var span = el("span", null, tokens[t]);
      var m = marks[t];
      if (t === 0 || t === tokens.length - 1) span.className = "special";
      if (m.length) {
        var styles = [],
          shadows = [];
        var trans = m.filter(function (x) {
          return x[1];
        });
        if (trans.length) styles.push("background:" + light(trans[0][0]), "font-weight:bold");
        m.forEach(function (x, depth) {
          shadows.push("inset 0 -" + (2 + 2 * depth) + "px " + color(x[0]));
        });
        styles.push("box-shadow:" + shadows.reverse().join(","));
        span.style.cssText = styles.join(";");
        span.title = m
          .map(function (x) {
            return x[2];
          })
          .join("; ");
      }
      frag.appendChild(span);
      frag.appendChild(document.createTextNode(" "));
    }
    if (last.truncated) frag.appendChild(el("span", { class: "muted" }, "(the server explained the first tokens only) "));
    if (tokens.length > n) frag.appendChild(el("span", { class: "muted" }, "\u2026 (" + (tokens.length - n) + " more tokens)"));
    box.appendChild(frag);
  }

  function drawTable(exp) {
    var table = byId("wfsas");
    table.textContent = "";
    var classes = exp.classes;
    var pred = classes.indexOf(exp.label);
    var head = el("tr");
    ["pattern", "length", "score"].forEach(function (h) {
      head.appendChild(el("th", null, h));
    });
    classes.forEach(function (c) {
      head.appendChild(el("th", null, "to " + c));
    });
    head.appendChild(el("th", null, exp.readout === "final" ? "best path (to the end)" : "best span (anywhere)"));
    head.appendChild(el("th", null, exp.readout === "final" ? "worst path" : "worst span"));
    table.appendChild(head);
    var rows = exp.wfsas.slice().sort(function (a, b) {
      return b.contributions[pred] - a.contributions[pred];
    });
    rows.forEach(function (w) {
      var tr = el("tr", { "data-wfsa": String(w.wfsa) });
      var name = el("td");
      name.appendChild(el("span", { class: "swatch", style: "background:" + color(w.wfsa) }));
      name.appendChild(document.createTextNode(String(w.wfsa + 1)));
      tr.appendChild(name);
      tr.appendChild(el("td", { class: "num" }, String(w.length)));
      tr.appendChild(el("td", { class: "num" }, fmt(w.score)));
      w.contributions.forEach(function (x, c) {
        tr.appendChild(el("td", { class: "num" + (c === pred ? " pred" : "") }, fmt(x)));
      });
      [w.best, w.worst].forEach(function (p) {
        var td = el("td");
        td.appendChild(phrase(exp.tokens, p));
        tr.appendChild(td);
      });
      tr.addEventListener("mouseenter", function () {
        focus = w.wfsa;
        drawTokens();
      });
      tr.addEventListener("mouseleave", function () {
        focus = null;
        drawTokens();
      });
      table.appendChild(tr);
    });
    var bias = el("tr");
    bias.appendChild(el("th", { colspan: "3" }, "bias"));
    exp.bias.forEach(function (b) {
      bias.appendChild(el("td", { class: "num" }, fmt(b)));
    });
    table.appendChild(bias);
    var logit = el("tr");
    logit.appendChild(el("th", { colspan: "3" }, "logit"));
    exp.logits.forEach(function (z) {
      logit.appendChild(el("td", { class: "num" }, fmt(z)));
    });
    table.appendChild(logit);
  }

  function drawBars(exp) {
    var box = byId("bars");
    box.textContent = "";
    exp.classes.forEach(function (c) {
      var p = exp.probabilities[c];
      var row = el("div", { class: "bar" + (c === exp.label ? " pred" : "") });
      row.appendChild(el("span", { class: "name" }, c));
      var track = el("span", { class: "track" });
      track.appendChild(el("span", { class: "fill", style: "width:" + (100 * p).toFixed(1) + "%" }));
      row.appendChild(track);
      row.appendChild(el("span", { class: "num" }, p.toFixed(4)));
      box.appendChild(row);
    });
  }

  function show(exp) {
    last = exp;
    var out = byId("prediction");
    out.dataset.label = exp.label;
    out.dataset.probabilities = JSON.stringify(exp.probabilities);
    if (!out.dataset.ms) out.dataset.ms = performance.now().toFixed(1);
    delete out.dataset.error;
    out.textContent = exp.label + " (" + exp.probabilities[exp.label].toFixed(3) + ")";
    drawBars(exp);
    drawTokens();
    drawTable(exp);
  }

  function fail(err) {
    var out = byId("prediction");
    out.dataset.error = String(err && err.message ? err.message : err);
    out.textContent = "error: " + out.dataset.error;
  }

  // scoring as the user types: the newest text wins
  var pending = null,
    timer = null,
    controller = null;
  function update() {
    var text = byId("input").value;
    if (controller) controller.abort();
    controller = typeof AbortController !== "undefined" ? new AbortController() : null;
    var mine = (pending = {});
    var t0 = performance.now();
    explainText(text, controller ? controller.signal : undefined).then(
      function (exp) {
        if (mine !== pending) return;
        show(exp);
        byId("prediction").dataset.scoreMs = (performance.now() - t0).toFixed(2);
      },
      function (err) {
        if (mine === pending && !(err && err.name === "AbortError")) fail(err);
      }
    );
  }
  byId("input").addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(update, model ? 0 : 120);
  });

  function hook() {
    var hash = location.hash.slice(1);
    if (hash.indexOf("texts=") === 0) {
      var texts = JSON.parse(decodeURIComponent(hash.slice(6)));
      var many = byId("predictions");
      predictTexts(texts).then(
        function (results) {
          many.dataset.results = JSON.stringify(results);
          many.dataset.ms = performance.now().toFixed(1);
          many.textContent = results.length + " texts scored";
        },
        function (err) {
          many.dataset.error = String(err && err.message ? err.message : err);
        }
      );
      return;
    }
    if (hash.indexOf("text=") === 0) byId("input").value = decodeURIComponent(hash.slice(5));
    if (loadError) fail(loadError);
    else update();
  }
  hook();
  window.addEventListener("hashchange", hook);
})();
