"""The SLURM backend (:mod:`.backend`, which imports submitit), the queue's own tools
(:mod:`.queue`: sacct, squeue, scancel, scontrol) and sbatch settings (:mod:`.resources`).

Importing this package imports none of them: a listing that only asks about jobs
must not pay for submitit.
"""
