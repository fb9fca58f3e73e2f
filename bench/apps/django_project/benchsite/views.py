"""The one view of case 3's Django project."""

from django.http import HttpResponse


def hello(request):
    return HttpResponse("Hello, World!", content_type="text/plain")
