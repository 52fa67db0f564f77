from django.urls import path

from . import views

app_name = "apikeys"

urlpatterns = [
    path("keys", views.KeysView.as_view(), name="keys"),
    path("keys/<str:prefix>", views.KeyView.as_view(), name="key"),
]
