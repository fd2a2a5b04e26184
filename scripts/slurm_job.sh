#!/bin/bash
# SLURM job template for a bohmpower conditional-wavefunction ensemble.
# Copy, edit the lines marked EDIT, submit with `sbatch slurm_job.sh`.
#
#SBATCH --job-name=bohmpower            # EDIT
#SBATCH --ntasks=64                     # EDIT: MPI ranks (one per core)
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00                 # EDIT: wall time of one job
#SBATCH --signal=B:TERM@300             # SIGTERM 5 min before the limit: bohmpower checkpoints
#SBATCH --requeue                       # and exits 75, so the job can be requeued
#SBATCH --output=%x-%j.log

set -euo pipefail
RUN=my_run.toml                         # EDIT: the run file
OUT=my_run.h5                           # EDIT: the result file

# One thread per rank: the ranks already fill the cores.
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# mpi4py must be built against the cluster's MPI (not the PyPI mpich wheel):
#   module load openmpi   (or your site's MPI)
#   pip install --no-binary mpi4py mpi4py
# A run whose ranks all see an MPI world of size 1 is detected and stopped with that explanation.

# Leave 2 minutes for the final gather and write; stop cleanly before the wall-time limit.
WALL=$(( $(squeue -h -j "$SLURM_JOB_ID" -o %L | awk -F'[-:]' '{ if (NF==4) print ($1*86400+$2*3600+$3*60+$4); else if (NF==3) print ($1*3600+$2*60+$3); else print ($1*60+$2) }') - 120 ))

RESUME=""
[ -d "$OUT.checkpoint" ] && RESUME="--resume"

set +e
srun bohmpower run "$RUN" -o "$OUT" $RESUME --max-wall-time "$WALL" --checkpoint-interval 600
code=$?
set -e
if [ "$code" -eq 75 ]; then
    echo "stopped cleanly with a checkpoint; requeueing"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$code"
