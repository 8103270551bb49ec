"""Small helpers every stage shares: user errors (`errors`), finite numbers at the JSON boundary (`finite`),
bounded reads of user files (`inputs`), file hashes and atomic writes (`files`), output folders (`outdir`),
the hub-id pattern (`hubids`) and terminal text (`termtext`). Nothing here imports another copyscope package."""
