"""A small Flask app: a page, a JSON POST endpoint and a report of where Flask came from
(to prove the vassal runs in the test virtualenv)."""
import sys

import flask
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return "Hello from Flask"


@app.get("/hello/<name>")
def hello(name):
    return f"Hello, {name}!"


@app.post("/echo")
def echo():
    data = request.get_json(force=True)
    return jsonify(received=data, length=request.content_length)


@app.get("/venv")
def venv():
    return jsonify(prefix=sys.prefix, base_prefix=sys.base_prefix, flask=flask.__file__)
