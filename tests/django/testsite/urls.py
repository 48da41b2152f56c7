from django.urls import include, path

from . import views

urlpatterns = [
    path("ok", views.ok, name="ok"),
    path("missing", views.missing, name="missing"),
    path("boom", views.boom, name="boom"),
    path("slow", views.slow, name="slow"),
    # /metrics
    path("", include("django_prometheus.urls")),
]
