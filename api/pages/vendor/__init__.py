"""Third-party browser assets, committed as published (deploy/vendor-assets.sh reproduces them).

A package only so that a wheel carries these files along with api/pages.
"""
