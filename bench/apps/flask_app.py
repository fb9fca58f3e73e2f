"""The Flask app of case 3: one route returning a string."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, World!"


application = app
