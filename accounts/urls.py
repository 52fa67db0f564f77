from django.urls import path

from . import views

urlpatterns = [
    path("sites", views.SitesView.as_view(), name="sites"),
    path("sites/<str:host>", views.SiteView.as_view(), name="site"),
    path("sites/<str:host>/members", views.MembersView.as_view(), name="site-members"),
    path(
        "sites/<str:host>/members/<str:username>",
        views.MemberView.as_view(),
        name="site-member",
    ),
]
