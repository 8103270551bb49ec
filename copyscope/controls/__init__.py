"""Controls: the evidence an audit carries about its own metric, in the user's own pipeline.

* ``worth``: specific worth, similarity to the work against a background of generic images (pure numpy);
* ``background``: the background images (the builtin generic set and the zoo's ``background:`` entries).
"""
