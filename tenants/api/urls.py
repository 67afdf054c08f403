from rest_framework.routers import SimpleRouter

from tenants.api.views import CodeMappingViewSet, ConnectionViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("connections", ConnectionViewSet, basename="connection")
router.register("code-mappings", CodeMappingViewSet, basename="code-mapping")

urlpatterns = router.urls
