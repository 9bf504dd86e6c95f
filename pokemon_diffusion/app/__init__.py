"""The local web page of ``pokemon-diffusion app``: watch a Pokémon appear while it is sampled.

``session`` holds the request checks and the streaming (no web code); ``ui`` builds the Gradio
page on top; ``browser`` drives headless Chromium for the page's tests and screenshot. Nothing
here imports Gradio, TensorFlow or Selenium until it is used.
"""
