"""Interpretability of input gradients: quantitative measures and the paper-style figures.

``measures`` scores how image-like a model's input gradients are; ``figures`` draws the gradient
(saliency) grid and the adversarial-example grid that ``igbench explain`` writes.
"""
