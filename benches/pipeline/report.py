"""Print one benchmark row per run and the per-stage table from stats.json.

    python3 benches/pipeline/report.py NAME OUT_DIR TIME_FILE
TIME_FILE holds `user sys maxrss_kb` from /usr/bin/time.
"""
import json
import sys

name, out, time_file = sys.argv[1:4]
stats = json.load(open(f"{out}/stats.json"))
user, sys_, rss = open(time_file).read().split()
cpu = float(user) + float(sys_)
mb = stats["bytes_in"] / 1e6
print(f"{name:<28} {mb:8.1f} MB  {cpu:8.2f} CPU-s  {mb / cpu:8.2f} MB/CPU-s  peak RSS {int(rss) / 1024:7.1f} MB"
      f"  in {stats['input']} kept {stats['kept']} rejected {stats['rejected']}")
if len(stats["stages"]) > 1:
    staged = 0.0
    print(f"    {'stage':<16} {'records in':>10} {'MB in':>8} {'CPU-s':>8} {'MB/CPU-s':>9} {'share':>6}")
    for s in stats["stages"]:
        c = s.get("cpu_seconds", 0.0)
        staged += c
        smb = s.get("bytes_in", 0) / 1e6
        rate = f"{smb / c:9.1f}" if c > 0 else f"{'-':>9}"
        label = "read (parse)" if s["name"] == "read" else s["name"]
        print(f"    {label:<16} {s['in']:>10} {smb:8.1f} {c:8.2f} {rate} {100 * c / cpu:5.1f}%")
    rest = cpu - staged
    print(f"    {'other':<16} {'':>10} {'':>8} {rest:8.2f} {'':>9} {100 * rest / cpu:5.1f}%"
          "   (reading, decompression, serialising, writing, prepass bookkeeping)")
