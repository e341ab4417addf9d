"""Scores against ground truth, apart from the pipeline's steps: :mod:`.vos` (J, F and J&F as DAVIS
computes them, identity as py-motmetrics and TrackEval define it, the DAVIS 2017 tables) and :mod:`.synthetic`
(clips with exact masks, and DAVIS-layout datasets of them). Only the evaluation steps and the
benchmarks import it, so an edit here reruns nothing else."""
