/* sparse-rational: the exported automata scored in the browser (no DOM here).
 *
 * tokenize(text)           the library's tokenizer (sparse_rational/data/tokenize.py), the
 *                          same regular expression with Unicode property classes
 * loadModel(payload)       the page's embedded model (float32 arrays in base64)
 * explain(model, text)     probabilities, each WFSA's score and contribution to each class's
 *                          logit, and its best and worst single path (max-/min-times), in the
 *                          same JSON shape as the server's POST /explain
 *
 * The numbers follow sparse_rational/export.py and docs/DESIGN.md:
 *   f = sigmoid(v.x + b), u = (w.x)(1 - f), c_k <- f_k c_k + u_k c_{k-1} (c_0 = 1),
 *   score = sum_k r(c_k) with the readout r (final, mean or max over the tokens),
 *   logits = W scores + bias.
 * Paths: the interval (hi, lo) dynamic program of sparse_rational/explain/paths.py and its
 * backpointers (ties go to the first candidate, as there).
 */
"use strict";

var SparseRational = (function () {
  // ---- tokenizer -------------------------------------------------------------------------
  var ABBREVIATIONS = "mr|mrs|ms|dr|jr|sr|st|vs|etc|inc|ltd|co|corp|mt|prof|gen|jan|feb|aug|sept?|oct|nov|dec";
  // str.split()'s whitespace (Python's str.isspace), not JavaScript's \s
  var SPACES = "\\t\\n\\u000b\\u000c\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
  var A = "[\\p{L}\\p{N}]"; // Python's [^\W_]: a letter or a digit of any script
  var L = "[\\p{L}\\p{Nl}\\p{No}]"; // Python's [^\W\d_]: a letter (no decimal digit)
  var D = "\\p{Nd}"; // Python's \d on str patterns
  var END = "(?!" + A + ")"; // at a word end
  var TOKEN_RE = new RegExp(
    [
      "https?:\\/\\/[^" + SPACES + "<>\"']+",
      "(?:" + A + "+\\.)+(?:com|org|net|edu|gov)" + END,
      "(?:" + L + "\\.)+" + L + END + "\\.?",
      "(?:" + ABBREVIATIONS + ")\\." + END,
      A + "+(?=n't" + END + ")",
      "n't" + END,
      "'(?:s|re|ve|ll|d|m|em|n|" + D + "0s)" + END,
      D + "+(?:[.,:\\/]" + D + "+)+",
      A + "+(?:\\/" + A + "+)+" + END,
      A + "+(?:(?:-|'(?!(?:s|re|ve|ll|d|m)" + END + "))" + A + "+)*",
      "\\.{2,}|-{2,}|[!?]{2,}|\\*{2,}",
      "``|''",
      "[^]",
    ].join("|"),
    "gu"
  );
  var ALNUM_RE = new RegExp("^" + A + "+$", "u");
  var SPACE_RE = new RegExp("[" + SPACES + "]+", "u");
  var TRANSLATE = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u02bc": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2013": "-",
    "\u2014": "--",
    "\u2026": "...",
    "\u00a0": " ",
    "\ufffd": " ",
  };
  var TRANSLATE_RE = /[\u2018\u2019\u201a\u02bc\u201c\u201d\u201e\u2013\u2014\u2026\u00a0\ufffd\u0000-\u0008\u000b\u000c\u000e-\u001f]/g;

  // HTML character references as the HTML standard reads them (Python's html.unescape follows
  // the same standard): the browser's own parser, on an element that is never attached.
  var unescaper = null;
  function unescapeHtml(text) {
    if (typeof document === "undefined") return text;
    if (unescaper === null) unescaper = document.createElement("textarea");
    unescaper.innerHTML = text;
    return unescaper.value;
  }

  function tokenize(text) {
    if (text.indexOf("&") >= 0) text = unescapeHtml(text);
    text = text.normalize("NFC").toLowerCase();
    text = text.replace(TRANSLATE_RE, function (ch) {
      return TRANSLATE[ch] !== undefined ? TRANSLATE[ch] : " ";
    });
    var tokens = [];
    var chunks = text.split(SPACE_RE);
    for (var i = 0; i < chunks.length; i++) {
      var chunk = chunks[i];
      if (!chunk) continue;
      if (ALNUM_RE.test(chunk)) {
        tokens.push(chunk);
        continue;
      }
      TOKEN_RE.lastIndex = 0;
      var m;
      while ((m = TOKEN_RE.exec(chunk)) !== null) tokens.push(m[0]);
    }
    return tokens;
  }

  // ---- the model -------------------------------------------------------------------------
  var B64 = new Uint8Array(128);
  (function () {
    var s = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (var i = 0; i < s.length; i++) B64[s.charCodeAt(i)] = i;
  })();

  function float32s(b64) {
    var n = b64.length;
    var pad = b64.charAt(n - 1) === "=" ? (b64.charAt(n - 2) === "=" ? 2 : 1) : 0;
    var bytes = new Uint8Array((n / 4) * 3 - pad);
    var o = 0;
    for (var i = 0; i < n; i += 4) {
      var x =
        (B64[b64.charCodeAt(i)] << 18) |
        (B64[b64.charCodeAt(i + 1)] << 12) |
        (B64[b64.charCodeAt(i + 2)] << 6) |
        B64[b64.charCodeAt(i + 3)];
      bytes[o++] = x >>> 16;
      if (o < bytes.length) bytes[o++] = (x >>> 8) & 255;
      if (o < bytes.length) bytes[o++] = x & 255;
    }
    return new Float32Array(bytes.buffer); // little-endian, as written
  }

  function loadModel(p) {
    var vocab = p.vocab.length ? p.vocab.split("\n") : [];
    var index = new Map();
    for (var i = 0; i < vocab.length; i++) index.set(vocab[i], i);
    var structure = p.structure;
    var starts = [];
    var N = 0;
    for (var j = 0; j < structure.length; j++) {
      starts.push(N);
      N += structure[j];
    }
    var isFirst = new Uint8Array(N);
    for (j = 0; j < structure.length; j++) isFirst[starts[j]] = 1;
    return {
      readout: p.readout,
      classes: p.classes,
      tokens: p.tokens,
      index: index,
      dim: p.dim,
      structure: structure,
      starts: starts,
      isFirst: isFirst,
      N: N,
      E: float32s(p.embeddings),
      W: float32s(p.w),
      V: float32s(p.v),
      b: p.b,
      weight: p.weight,
      bias: p.bias,
      maxTokens: p.max_tokens,
      charsPerToken: p.chars_per_token,
    };
  }

  // The first ``n`` code points of ``text`` (Python slices code points, JavaScript UTF-16 units).
  function codePoints(text, n) {
    var out = 0;
    var count = 0;
    while (out < text.length && count < n) {
      var c = text.charCodeAt(out);
      out += c >= 0xd800 && c <= 0xdbff && out + 1 < text.length ? 2 : 1;
      count++;
    }
    return text.slice(0, out);
  }

  // <s> w_1 .. w_n </s>, cut as predict cuts long texts (sparse_rational/embeddings/featurizer.py)
  function words(model, text) {
    var limit = model.maxTokens * model.charsPerToken;
    if (model.maxTokens > 0 && text.length > limit) text = codePoints(text, limit);
    var t = model.tokens;
    var out = (t.bos ? [t.bos] : []).concat(tokenize(text), t.eos ? [t.eos] : []);
    var keep = Math.max(model.maxTokens, 2);
    if (model.maxTokens > 0 && out.length > keep) out = out.slice(0, keep - 1).concat(out.slice(-1));
    return out;
  }

  // u, f: [T * N] main-path and self-loop weights of every token and state
  function transitionWeights(model, ids) {
    var T = ids.length,
      N = model.N,
      e = model.dim;
    var E = model.E,
      W = model.W,
      V = model.V,
      b = model.b;
    var u = new Float64Array(T * N),
      f = new Float64Array(T * N);
    for (var t = 0; t < T; t++) {
      var row = ids[t] * e;
      for (var s = 0; s < N; s++) {
        var a = 0,
          g = b[s],
          col = s * e;
        for (var k = 0; k < e; k++) {
          var x = E[row + k];
          a += W[col + k] * x;
          g += V[col + k] * x;
        }
        var sig = 1 / (1 + Math.exp(-g));
        f[t * N + s] = sig;
        u[t * N + s] = a * (1 - sig);
      }
    }
    return { u: u, f: f };
  }

  // the model's (plus-times) score of every WFSA, with its readout
  function wfsaScores(model, T, uf) {
    var N = model.N,
      u = uf.u,
      f = uf.f;
    var c = new Float64Array(N),
      prev = new Float64Array(N),
      pooled = new Float64Array(N);
    if (model.readout === "max") pooled.fill(-Infinity);
    for (var t = 0; t < T; t++) {
      prev.set(c);
      for (var s = 0; s < N; s++) {
        var p = model.isFirst[s] ? 1 : prev[s - 1];
        c[s] = f[t * N + s] * prev[s] + u[t * N + s] * p;
        if (model.readout === "mean") pooled[s] += c[s];
        else if (model.readout === "max" && c[s] > pooled[s]) pooled[s] = c[s];
      }
    }
    var state = model.readout === "final" ? c : pooled;
    if (model.readout === "mean") for (s = 0; s < N; s++) state[s] /= Math.max(T, 1);
    if (model.readout === "max" && T === 0) state.fill(0);
    var scores = [];
    for (var j = 0; j < model.structure.length; j++) {
      var sum = 0;
      for (var k = 0; k < model.structure[j]; k++) sum += state[model.starts[j] + k];
      scores.push(sum);
    }
    return scores;
  }

  // the interval (max-/min-times) DP: hi, lo [T * N] after each token
  function intervals(model, T, uf) {
    var N = model.N,
      u = uf.u,
      f = uf.f;
    var hi = new Float64Array(T * N),
      lo = new Float64Array(T * N);
    var ch = new Float64Array(N).fill(-Infinity),
      cl = new Float64Array(N).fill(Infinity);
    var ph = new Float64Array(N),
      pl = new Float64Array(N);
    for (var t = 0; t < T; t++) {
      ph.set(ch);
      pl.set(cl);
      for (var s = 0; s < N; s++) {
        var qh = model.isFirst[s] ? 1 : ph[s - 1],
          ql = model.isFirst[s] ? 1 : pl[s - 1];
        var fs = f[t * N + s],
          us = u[t * N + s];
        var h1 = -Infinity,
          l1 = Infinity,
          h2 = -Infinity,
          l2 = Infinity;
        if (ph[s] >= pl[s]) {
          h1 = Math.max(fs * ph[s], fs * pl[s]);
          l1 = Math.min(fs * ph[s], fs * pl[s]);
        }
        if (qh >= ql) {
          h2 = Math.max(us * qh, us * ql);
          l2 = Math.min(us * qh, us * ql);
        }
        ch[s] = Math.max(h1, h2);
        cl[s] = Math.min(l1, l2);
        hi[t * N + s] = ch[s];
        lo[t * N + s] = cl[s];
      }
    }
    return { hi: hi, lo: lo };
  }

  // which candidate produced bound ``bound`` (0: hi, 1: lo) of state s at token t:
  // 0, 1: the self-loop from hi, lo at t-1; 2, 3: the main path from the previous state's hi, lo
  function choice(model, uf, iv, t, s, bound) {
    var N = model.N;
    var ph = t > 0 ? iv.hi[(t - 1) * N + s] : -Infinity,
      pl = t > 0 ? iv.lo[(t - 1) * N + s] : Infinity;
    var qh = 1,
      ql = 1;
    if (!model.isFirst[s]) {
      qh = t > 0 ? iv.hi[(t - 1) * N + s - 1] : -Infinity;
      ql = t > 0 ? iv.lo[(t - 1) * N + s - 1] : Infinity;
    }
    var fs = uf.f[t * N + s],
      us = uf.u[t * N + s];
    var cands = [fs * ph, fs * pl, us * qh, us * ql];
    var ok = [ph >= pl, ph >= pl, qh >= ql, qh >= ql];
    var best = 0,
      value = bound === 0 ? -Infinity : Infinity;
    for (var k = 0; k < 4; k++) {
      var c = ok[k] ? cands[k] : bound === 0 ? -Infinity : Infinity;
      if (isNaN(c)) c = bound === 0 ? -Infinity : Infinity;
      if (bound === 0 ? c > value : c < value) {
        value = c;
        best = k;
      }
    }
    return best;
  }

  // the best ("best") or worst path of WFSA j: its states after each token (-1: not read)
  function path(model, T, uf, iv, j, kind, anywhere) {
    var N = model.N,
      start = model.starts[j],
      n = model.structure[j];
    var block = kind === "best" ? iv.hi : iv.lo;
    var better = kind === "best" ? (a, b) => a > b : (a, b) => a < b;
    var end = T - 1,
      state = 1,
      value = NaN;
    if (T > 0) {
      value = kind === "best" ? -Infinity : Infinity;
      var first = anywhere ? 0 : T - 1;
      var found = false;
      for (var t = first; t < T; t++) {
        for (var k = 0; k < n; k++) {
          var x = block[t * N + start + k];
          if (!found || better(x, value)) {
            found = true;
            value = x;
            end = t;
            state = k + 1;
          }
        }
      }
    }
    var states = new Array(T).fill(-1);
    var i = state,
      bound = kind === "best" ? 0 : 1;
    for (t = end; t >= 0; t--) {
      states[t] = i;
      if (i > 0) {
        var c = choice(model, uf, iv, t, start + i - 1, bound);
        if (c >= 2) i -= 1;
        bound = c & 1;
      }
    }
    return { score: value, states: states };
  }

  function softmax(logits) {
    var m = Math.max.apply(null, logits);
    var ex = logits.map(function (x) {
      return Math.exp(x - m);
    });
    var z = ex.reduce(function (a, b) {
      return a + b;
    }, 0);
    return ex.map(function (x) {
      return x / z;
    });
  }

  function probabilities(model, scores) {
    var logits = model.bias.map(function (bias, c) {
      var z = bias;
      for (var j = 0; j < scores.length; j++) z += model.weight[c][j] * scores[j];
      return z;
    });
    return { logits: logits, probabilities: softmax(logits) };
  }

  function ids(model, tokens) {
    var unk = model.index.get(model.tokens.unk);
    return tokens.map(function (w) {
      var i = model.index.get(w);
      return i === undefined ? unk : i;
    });
  }

  function asObject(classes, values) {
    var out = {};
    classes.forEach(function (c, i) {
      out[c] = values[i];
    });
    return out;
  }

  // label and probabilities only (the multi-text hook)
  function predict(model, text) {
    var tokens = words(model, text);
    var uf = transitionWeights(model, ids(model, tokens));
    var r = probabilities(model, wfsaScores(model, tokens.length, uf));
    var best = r.probabilities.indexOf(Math.max.apply(null, r.probabilities));
    return { label: model.classes[best], probabilities: asObject(model.classes, r.probabilities), tokens: tokens };
  }

  // everything the page shows, in the shape of the server's POST /explain
  function explain(model, text) {
    var tokens = words(model, text);
    var T = tokens.length;
    var uf = transitionWeights(model, ids(model, tokens));
    var scores = wfsaScores(model, T, uf);
    var r = probabilities(model, scores);
    var iv = intervals(model, T, uf);
    var anywhere = model.readout !== "final";
    var pred = r.probabilities.indexOf(Math.max.apply(null, r.probabilities));
    var wfsas = scores.map(function (score, j) {
      return {
        wfsa: j,
        length: model.structure[j],
        score: score,
        contributions: model.classes.map(function (c, k) {
          return score * model.weight[k][j];
        }),
        best: path(model, T, uf, iv, j, "best", anywhere),
        worst: path(model, T, uf, iv, j, "worst", anywhere),
      };
    });
    return {
      label: model.classes[pred],
      classes: model.classes,
      probabilities: asObject(model.classes, r.probabilities),
      logits: r.logits,
      bias: model.bias,
      readout: model.readout,
      tokens: tokens,
      wfsas: wfsas,
    };
  }

  return { tokenize: tokenize, loadModel: loadModel, predict: predict, explain: explain, words: words };
})();
