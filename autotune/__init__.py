"""The autotuner (search spaces, do_bench timing, persistent decision cache) arrives with the
matmul/attention templates issue; until then codegen picks launch configurations with the fixed
heuristic in codegen/launch_heuristics.py."""
