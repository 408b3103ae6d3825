"""Stands in for SimpleITK on ``PYTHONPATH`` so that a CPU run fails as a machine without SimpleITK would
(scripts/gpu_run.sh puts this folder first for every step that must run with torch and numpy alone)."""
raise ImportError("SimpleITK is blocked by scripts/no_simpleitk: this step must run with torch and numpy alone")
