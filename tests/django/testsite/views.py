"""Views answering 200, 404, 500 and a slow 200 with a known latency."""
import time

from django.http import Http404, HttpResponse

# The slow view's latency: between the 0.25 and 0.5 s buckets of django-prometheus.
SLOW_SECONDS = 0.3


def ok(request):
    return HttpResponse("ok\n")


def missing(request):
    raise Http404("no such thing")


def boom(request):
    raise RuntimeError("boom")


def slow(request):
    time.sleep(SLOW_SECONDS)
    return HttpResponse("slow\n")
