#!/usr/bin/env python3
"""Speed peer for tellijn-counter (bench/counter.sh): OpenCV's MOG2 background subtraction plus
contours, on the same Y4M stream from stdin, luma plane only (as tellijn-counter uses).

Per frame: mog2.apply(Y) -> threshold at 127 (drops MOG2's shadow label 127, keeps 255) ->
morphology open (3x3) and close (5x5) -> findContours (external) -> centroids of blobs of at
least a quarter of a person. No tracking and no line counting: this peer does *less* work per
frame than tellijn-counter (which also tracks and counts), so it is a generous speed reference.

Single-threaded OpenCV (cv2.setNumThreads(1)); bench/counter.sh pins the process to one core.
Prints one JSON line: frames, seconds (first frame read -> last frame done; the Python start
and the cv2 import are not counted), fps (frames / those wall seconds), cpu_fps (frames / CPU
seconds of the process over the same span), blobs (sum of centroids over all frames).
Usage: counter_peer.py [--person-size PX] < scene.y4m
"""
import json
import sys
import time

import cv2
import numpy as np


def main():
    size = 40
    if len(sys.argv) == 3 and sys.argv[1] == "--person-size":
        size = int(sys.argv[2])
    cv2.setNumThreads(1)
    inp = sys.stdin.buffer
    header = inp.readline().split()
    if not header or header[0] != b"YUV4MPEG2":
        sys.exit("counter_peer: not a Y4M stream")
    w = h = None
    chroma = b"420"
    for tok in header[1:]:
        if tok[:1] == b"W":
            w = int(tok[1:])
        elif tok[:1] == b"H":
            h = int(tok[1:])
        elif tok[:1] == b"C":
            chroma = tok[1:]
    if not chroma.startswith(b"420") and chroma != b"mono":
        sys.exit(f"counter_peer: unsupported chroma {chroma!r}")
    ysize = w * h
    csize = 0 if chroma == b"mono" else 2 * ((w + 1) // 2) * ((h + 1) // 2)
    y = np.empty((h, w), dtype=np.uint8)
    ybuf = memoryview(y).cast("B")
    mog2 = cv2.createBackgroundSubtractorMOG2(history=500, varThreshold=16, detectShadows=True)
    k_open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    k_close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    min_area = (size * size) // 4
    frames = blobs = 0
    start = None
    while True:
        line = inp.readline()
        if not line:
            break
        if not line.startswith(b"FRAME"):
            sys.exit("counter_peer: bad frame header")
        if start is None:
            start, cpu0 = time.perf_counter(), time.process_time()
        if inp.readinto(ybuf) != ysize:
            sys.exit("counter_peer: short frame")
        if csize:
            inp.read(csize)  # U and V: unused
        fg = mog2.apply(y)
        _, mask = cv2.threshold(fg, 127, 255, cv2.THRESH_BINARY)  # 127 = shadow -> 0
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k_open)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, k_close)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            m = cv2.moments(c)
            if m["m00"] >= min_area:
                _cx, _cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
                blobs += 1
        frames += 1
    secs = time.perf_counter() - start if start is not None else 0.0
    cpu = time.process_time() - cpu0 if start is not None else 0.0
    print(json.dumps({"frames": frames, "seconds": round(secs, 3),
                      "fps": round(frames / secs, 1) if secs > 0 else 0.0,
                      "cpu_fps": round(frames / cpu, 1) if cpu > 0 else 0.0, "blobs": blobs}))


if __name__ == "__main__":
    main()
