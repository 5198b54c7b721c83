"""The door's web page (``peephole web``): visits, people and health in a browser.

An entry layer beside ``device.cli``, over the same library
(``device.service.household.Household``); it has no SQL or model code of its
own. Only this package imports FastAPI, Starlette, uvicorn and Jinja2.
"""
