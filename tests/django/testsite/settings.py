"""Settings of the test site: django-prometheus set up as its README says, no database."""

SECRET_KEY = "sonde-e2e-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django_prometheus"]
# PrometheusBeforeMiddleware first and PrometheusAfterMiddleware last.
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
ROOT_URLCONF = "testsite.urls"
DATABASES = {}
USE_TZ = True
# The 500 view's traceback would fill the test's output.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django": {"handlers": ["null"], "propagate": False}},
}
