"""What a video clip costs on its way in (issue 28).

    python bench/video_clips.py [--runs 5]

Three tables, from clips this script encodes with PyAV (H.264, 30 fps, a textured scene
that pans, so the decoder has real work on every frame):
1. decode and sample (`media.video.read_clip` at the defaults: 2 frames a second, 64
   frames, 8 MP a clip) for 10 s and 60 s clips at 720p and 1080p, min/median of
   --runs, and the vision tokens each clip takes in Qwen3-VL's prompt (its video
   processor class with its own defaults, the real model's);
2. memory: the high-water mark of a fresh process decoding the 60 s 1080p clip, above
   the same process idle after its imports (Linux: /proc/self/clear_refs and VmHWM; the
   decode keeps only the frames it samples);
3. time to first token of a question about a clip against one about a photo, on the
   same model (the committed shapes-vlm on this machine; --model for another), each
   read from scratch (caches cleared), min/median of --runs;
4. a follow-up after a clip question: its time to first token with the KV cache of the
   turn before (the app's default) and without it (--prefix-cache-mb 0: the clip's
   tokens read again), and how many prompt tokens the cache saved.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from mmchat.media.video import CLIPS, ClipLimits, read_clip  # noqa: E402

LIMITS = ClipLimits()
MAX_BYTES = 2_000_000_000


def encode(path: Path, seconds: int, size: tuple[int, int], fps: int = 30) -> Path:
    """A textured scene panning a few pixels a frame (random texture: real work for the decoder)."""
    width, height = size
    texture = np.random.default_rng(0).integers(0, 255, (height, width * 2, 3), dtype=np.uint8)
    texture = (texture // 64 * 64).astype(np.uint8)  # coarser noise: a bit rate like a phone's, not pure noise
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for i in range(seconds * fps):
            shift = (i * 4) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, shift:shift + width]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def vision_tokens(frames) -> int:
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from transformers.video_utils import VideoMetadata

    processor = Qwen3VLVideoProcessor()
    images = list(frames.images) + ([frames.images[-1]] if len(frames.images) % 2 else [])
    metadata = VideoMetadata(total_num_frames=len(images), fps=frames.rate, frames_indices=list(range(len(images))))
    out = processor(videos=[images], video_metadata=[metadata], do_sample_frames=False, cap_pixels_per_frame=True,
                    return_tensors="pt")
    return int(out["video_grid_thw"].prod()) // processor.merge_size ** 2


def decode_table(clips: dict, runs: int) -> None:
    print("| clip | file MB | frames kept | frame size | decode+sample ms min | median | vision tokens |")
    print("|---|---|---|---|---|---|---|")
    for name, path in clips.items():
        times = []
        for _ in range(runs):
            CLIPS.clear()
            start = time.perf_counter()
            clip = read_clip(path, limits=LIMITS, max_bytes=MAX_BYTES)
            times.append((time.perf_counter() - start) * 1000)
        frames = clip.frames
        width, height = frames.images[0].size
        print(f"| {name} | {path.stat().st_size / 1e6:.1f} | {len(frames.images)} | {width}x{height} | "
              f"{min(times):.0f} | {statistics.median(times):.0f} | {vision_tokens(frames)} |")


# The child resets its high-water mark after the imports (writing 5 to /proc/self/clear_refs
# sets VmHWM to the present VmRSS), so the peak is the decode's, not the imports'.
MEMORY_CHILD = """
import sys
sys.path.insert(0, {root!r})
from mmchat.media.video import ClipLimits, read_clip

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(field))

with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
idle = status("VmRSS:")
read_clip({path!r}, limits=ClipLimits(), max_bytes=2_000_000_000)
print(idle, status("VmHWM:"))
"""


def memory_table(path: Path, runs: int) -> None:
    above = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD.format(root=str(ROOT), path=str(path))],
                             capture_output=True, text=True, check=True).stdout.split()
        idle, peak = int(out[0]), int(out[1])  # kilobytes
        above.append((peak - idle) / 1024)
    print("| clip | high-water above idle MB, min | median | max |")
    print("|---|---|---|---|")
    print(f"| {path.name} | {min(above):.0f} | {statistics.median(above):.0f} | {max(above):.0f} |")


def ttft_table(model: str, folder: Path, runs: int) -> None:
    from fixture_models import draw_test_image
    from mmchat.cancel import CancelToken
    from mmchat.config import Config
    from mmchat.engine import Completion, GenerationParams
    from mmchat.engine.local import create_local_engine

    engine = create_local_engine(Config(model=model, device="auto", quantization="auto"))
    photo = folder / "photo.png"
    draw_test_image("circle", "red").save(photo)
    clip = encode(folder / "ten-seconds.mp4", 10, (640, 360))
    questions = {
        "photo": {"type": "image_url", "image_url": {"url": photo.as_uri()}},
        "10 s clip (640x360)": {"type": "video_url", "video_url": {"url": clip.as_uri()}},
    }
    print(f"| question ({model.split('/')[-1]}) | prompt tokens | TTFT ms min | median |")
    print("|---|---|---|---|")
    for name, part in questions.items():
        messages = [{"role": "user", "content": [part, {"type": "text", "text": "What is in it?"}]}]
        firsts, tokens = [], 0
        for _ in range(runs):
            engine.forget()  # read from scratch: the clip decoded, its frames encoded
            start = time.perf_counter()
            for item in engine.stream(messages, GenerationParams(max_new_tokens=1, temperature=0),
                                      CancelToken.standalone()):
                if isinstance(item, Completion):
                    tokens = item.prompt_tokens
            firsts.append((time.perf_counter() - start) * 1000)
        print(f"| {name} | {tokens} | {min(firsts):.0f} | {statistics.median(firsts):.0f} |")


def follow_up_table(model: str, folder: Path, runs: int) -> None:
    from mmchat.cancel import CancelToken
    from mmchat.config import Config
    from mmchat.engine import Completion, GenerationParams
    from mmchat.engine.local import create_local_engine

    clip = encode(folder / "follow-up.mp4", 10, (640, 360))
    first = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip.as_uri()}},
                                          {"type": "text", "text": "What is in it?"}]}]
    print("| follow-up after a 10 s clip | prompt tokens | read from the cache | TTFT ms min | median |")
    print("|---|---|---|---|---|")
    for label, megabytes in (("with the KV cache", 1024.0), ("without (--prefix-cache-mb 0)", 0.0)):
        engine = create_local_engine(Config(model=model, device="auto", quantization="auto",
                                            prefix_cache_mb=megabytes))
        firsts, tokens, reused = [], 0, 0
        for run in range(runs):
            engine.forget()
            params = GenerationParams(max_new_tokens=4, temperature=0)
            answer = "".join(item for item in engine.stream(first, params, CancelToken.standalone())
                             if isinstance(item, str))
            follow = [*first, {"role": "assistant", "content": answer},
                      {"role": "user", "content": [{"type": "text", "text": f"And then? ({run})"}]}]
            before = engine.prefix.reused_tokens if engine.prefix is not None else 0
            start = time.perf_counter()
            for item in engine.stream(follow, GenerationParams(max_new_tokens=1, temperature=0),
                                      CancelToken.standalone()):
                if isinstance(item, Completion):
                    tokens = item.prompt_tokens
            firsts.append((time.perf_counter() - start) * 1000)
            reused = (engine.prefix.reused_tokens - before) if engine.prefix is not None else 0
        print(f"| {label} | {tokens} | {reused} | {min(firsts):.0f} | {statistics.median(firsts):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=str(ROOT / "tests" / "fixtures" / "shapes-vlm"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        print("Encoding the clips...", file=sys.stderr)
        clips = {f"{seconds} s {label}": encode(folder / f"{seconds}s-{label}.mp4", seconds, size)
                 for seconds in (10, 60) for label, size in (("720p", (1280, 720)), ("1080p", (1920, 1080)))}
        decode_table(clips, args.runs)
        print()
        memory_table(clips["60 s 1080p"], args.runs)
        print()
        ttft_table(args.model, folder, args.runs)
        print()
        follow_up_table(args.model, folder, args.runs)
    print(f"\nmax RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
          file=sys.stderr)


if __name__ == "__main__":
    main()
