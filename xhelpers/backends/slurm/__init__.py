"""The SLURM backend (:mod:`.backend`, which imports submitit), the queue's own tools
(:mod:`.queue`: sacct, squeue, scancel, scontrol), sbatch settings (:mod:`.resources`)
and what ``.slurm/`` keeps (:mod:`.housekeeping`).

Importing this package imports none of them: a listing that only asks about jobs
must not pay for submitit.
"""
