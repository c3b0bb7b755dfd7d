"""Media on their way in: each read and decoded once, checked, and handed on.

- `images.py`: photos (checks, orientation, the pixel budget, the decoded-photo cache).
- `audio.py`: recordings decoded to 16 kHz mono (damaged, lying or endless ones refused).
- `light.py`: the light level of a photo, from its pixels (describe mode's light preset).
"""
