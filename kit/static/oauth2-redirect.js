// Swagger UI's OAuth2 redirect page logic (its dist's oauth2-redirect.html, Apache-2.0), as a
// file of ours: the page it runs on allows no inline script. It runs in the sign-in popup,
// back on this origin, and hands the code (or the error) to the /docs page that opened it.
(function () {
  "use strict";

  function run() {
    var oauth2 = window.opener.swaggerUIRedirectOauth2;
    var sentState = oauth2.state;
    var redirectUrl = oauth2.redirectUrl;
    var query = /code|token|error/.test(window.location.hash)
      ? window.location.hash.substring(1)
      : window.location.search.substring(1);
    var received = {};
    new URLSearchParams(query).forEach(function (value, key) {
      received[key] = value;
    });
    var isValid = received.state === sentState;
    var flow = oauth2.auth.schema.get("flow");

    if ((flow === "accessCode" || flow === "authorizationCode") && !oauth2.auth.code) {
      if (!isValid) {
        oauth2.errCb({
          authId: oauth2.auth.name,
          source: "auth",
          level: "warning",
          message: "Authorization may be unsafe: the state sent was not the state returned",
        });
      }
      if (received.code) {
        delete oauth2.state;
        oauth2.auth.code = received.code;
        oauth2.callback({ auth: oauth2.auth, redirectUrl: redirectUrl });
      } else {
        var message = received.error
          ? "[" + received.error + "]: " + (received.error_description || "no code received")
          : "[Authorization failed]: no code received from the server";
        oauth2.errCb({ authId: oauth2.auth.name, source: "auth", level: "error", message: message });
      }
    } else {
      oauth2.callback({ auth: oauth2.auth, token: received, isValid: isValid, redirectUrl: redirectUrl });
    }
    window.close();
  }

  window.addEventListener("load", run);
})();
