"""Inference throughput: is a pruned ("thin") model really faster?

    python benchmarks/inference.py [--json FILE] [--threads 2] [--kernel auto]

Rows (``impl``):

* ``24x4``           the model forward (:meth:`RationalClassifier.forward_vectors`, eval mode,
                     no grad) on documents already embedded (``e = 300``, 200 tokens each,
                     batches of 64), 24 WFSAs of length 4 = 96 transitions
* ``pruned20``       the same for a structure left by pruning: 20 transitions
                     (``4,3,3,2,2,2,1,1,1,1``)
* ``predict:24x4``,  end-to-end :meth:`TextClassifier.predict` on raw text (tokenise, look
  ``predict:pruned20`` up ids, embed, forward, softmax), 198 words + ``<s>``/``</s>`` each

Each row has ``impl``, ``transitions``, ``docs_per_s`` (and ``B``, ``T``, ``e``, ``kernel``,
``ms_per_batch``); ``--json FILE`` writes ``{"results": [...], "threads", "torch", "provenance"}``
(command, git commit, CPU, versions, date: see ``_provenance.py``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

try:  # run as a script (python benchmarks/NAME.py): this folder is on sys.path
    from _provenance import cpu_model, provenance
except ImportError:  # imported as benchmarks.NAME
    from benchmarks._provenance import cpu_model, provenance

STRUCTURES = {"24x4": (4,) * 24, "pruned20": (4, 3, 3, 2, 2, 2, 1, 1, 1, 1)}


def time_it(run, min_repeats=5, max_repeats=50, budget_s=2.0):
    run()
    run()
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or (len(times) < max_repeats and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build_model(structure, e, kernel, vocab_size=0, seed=0):
    from sparse_rational.model import ModelConfig, RationalClassifier  # lazily: needs the model

    torch.manual_seed(seed)
    config = ModelConfig(structure=structure, embedding_dim=e, num_classes=2, vocab_size=vocab_size)
    emb = None
    if vocab_size:
        emb = torch.randn(vocab_size, e)
        emb = emb / emb.norm(dim=1, keepdim=True)
    return RationalClassifier(config, emb, impl=kernel).eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kernel", default="auto", help="recurrence implementation: auto, cpp, scan, reference")
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--T", type=int, default=200)
    ap.add_argument("--e", type=int, default=300)
    ap.add_argument("--docs", type=int, default=512, help="documents per predict() call")
    ap.add_argument("--no-predict", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from sparse_rational.ops import choose_impl

    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(args.B, args.T, args.e, generator=g)
    vectors /= vectors.norm(dim=-1, keepdim=True)
    mask = torch.ones(args.B, args.T, dtype=torch.bool)
    kernel = choose_impl(vectors) if args.kernel == "auto" else args.kernel
    results = []
    print(f"# forward: B={args.B} T={args.T} e={args.e}, kernel {kernel}, {args.threads} threads, {cpu_model()}")
    print(f"{'impl':<20}{'transitions':>12}{'ms/batch':>10}{'docs/s':>10}")

    def report(row):
        results.append(row)
        print(
            f"{row['impl']:<20}{row['transitions']:>12}{row['ms_per_batch']:>10.2f}{row['docs_per_s']:>10,}", flush=True
        )

    for name, structure in STRUCTURES.items():
        model = build_model(structure, args.e, kernel)

        @torch.no_grad()
        def run(model=model):
            model.forward_vectors(vectors, mask)

        sec = time_it(run)
        report(
            dict(
                impl=name,
                transitions=sum(structure),
                docs_per_s=round(args.B / sec),
                B=args.B,
                T=args.T,
                e=args.e,
                kernel=kernel,
                ms_per_batch=round(sec * 1e3, 3),
            )
        )

    if not args.no_predict:
        from sparse_rational.embeddings import BOS, EOS, UNK
        from sparse_rational.pipeline import TextClassifier
        from sparse_rational.vocab import Vocabulary

        words = [f"w{i}" for i in range(5000)]
        vocab = Vocabulary([UNK, BOS, EOS, *words])
        rng = torch.Generator().manual_seed(1)
        texts = [
            " ".join(words[j] for j in torch.randint(0, len(words), (args.T - 2,), generator=rng).tolist())
            for _ in range(args.docs)
        ]
        for name, structure in STRUCTURES.items():
            model = build_model(structure, args.e, kernel, vocab_size=len(vocab))
            clf = TextClassifier(model=model, vocab=vocab, classes=["neg", "pos"])
            sec = time_it(lambda clf=clf: clf.predict(texts), min_repeats=3, max_repeats=10, budget_s=3.0)
            report(
                dict(
                    impl=f"predict:{name}",
                    transitions=sum(structure),
                    docs_per_s=round(args.docs / sec),
                    B=128,
                    T=args.T,
                    e=args.e,
                    kernel=kernel,
                    ms_per_batch=round(sec * 1e3 * 128 / args.docs, 3),
                )
            )

    by = {r["impl"]: r for r in results}
    ratio = by["pruned20"]["docs_per_s"] / by["24x4"]["docs_per_s"]
    print(f"\n# target: pruned20 forward / 24x4 forward = {ratio:.2f}x (>= 3x) {'OK' if ratio >= 3 else 'MISSED'}")
    if "predict:24x4" in by:
        predict_ratio = by["predict:pruned20"]["docs_per_s"] / by["predict:24x4"]["docs_per_s"]
        print(f"# predict: pruned20 / 24x4 = {predict_ratio:.2f}x")
    if args.json:
        from sparse_rational.fileio import atomic_write_json

        atomic_write_json(
            args.json,
            {"results": results, "threads": args.threads, "torch": torch.__version__, "provenance": provenance(argv)},
        )
    return results


if __name__ == "__main__":
    main()
