"""The score stage: pure metric functions and their registry (`metrics/`), and the scorer that reads the
references and scores generated images against them, with features cached per image (`scorer`)."""
