"""The analysis half: reading run folders, comparing them, and summarizing sweeps.

It reads files only, and never imports torch or Hydra (a test checks it), so it answers in a
fraction of a second."""
