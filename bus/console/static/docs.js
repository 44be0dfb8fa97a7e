// The docs page: Swagger UI over the inbound sources' document and, for a browser logged in
// to the console, the admin API's (its cookie is sent; without a session that one says 401).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    urls: [
      { url: "/openapi.json", name: "Inbound sources (/openapi.json)" },
      { url: "/admin/openapi.json", name: "Admin API (/admin/openapi.json, console login)" },
    ],
    "urls.primaryName": "Inbound sources (/openapi.json)",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
});
