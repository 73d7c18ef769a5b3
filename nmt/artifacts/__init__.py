"""The files a run leaves behind and what is made from them: checkpoints, the run
directory's layout, averaged checkpoints and exports for other engines."""
