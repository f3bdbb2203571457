// Starts Swagger UI on /docs with the settings the page carries as JSON (kit/docs_page.py):
// the page has no inline script, so its Content-Security-Policy admits scripts from this
// origin only.
(function () {
  "use strict";
  var settings = JSON.parse(document.getElementById("swagger-settings").textContent);
  var ui = SwaggerUIBundle({
    url: settings.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    // Integrators call operations by these ids in generated clients (createTransfer, ...).
    displayOperationId: true,
    showExtensions: true,
    showCommonExtensions: true,
    // Swagger UI would otherwise send the spec to validator.swagger.io.
    validatorUrl: null,
    oauth2RedirectUrl: window.location.origin + settings.oauth2RedirectPath,
    presets: [SwaggerUIBundle.presets.apis],
  });
  ui.initOAuth(settings.initOAuth);
})();
