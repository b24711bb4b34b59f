"""A human-subject study of the paper's claim 6: do adversarial examples against one model look more like
their target class to people than examples against another?

The paper confirmed the claim with people; igbench's ``adv_target_alignment`` is only a model-free stand-in.
This package lets a researcher run the study itself, as a pairwise forced choice:

- :mod:`.make` attacks every model of a result (a targeted attack: TGSM by default) and picks the trials:
  one test image, its target class, and two models' examples of it side by side, sides and order random
  (seeded);
- :mod:`.questionnaire` writes them as one self-contained HTML page for participants, which names no
  model; :mod:`.record` writes the key (which model is on which side) beside it, validated;
- :mod:`.answers` reads the participants' answer files, :mod:`.scoring` tallies them per model pair,
  with the tests of :mod:`.statistics`.
"""
