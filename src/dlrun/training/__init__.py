"""The training half: config nodes -> data, model, optimizer -> the epoch loop -> a run folder.

Imports torch; the analysis half (dlrun.analysis) never does."""
