// A standard OpenID Connect provider for the federation test: the certified
// `oidc-provider` package (npm), with its development login and consent pages (any login,
// the password is not checked). Prints one JSON line {"issuer": …} once listening, then
// serves until killed.
//
// Environment: CLIENT_ID, CLIENT_SECRET, REDIRECT_URI (the Observatoire's callback),
// EMAIL_DOMAIN (the e-mail given to every login: <login>@<EMAIL_DOMAIN>).
import http from "node:http";
import Provider from "oidc-provider";

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: [process.env.REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: { openid: ["sub"], email: ["email", "email_verified"] },
  scopes: ["openid", "email"],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["cle-de-test-des-cookies-du-fournisseur"] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@${process.env.EMAIL_DOMAIN}`,
      email_verified: true,
    }),
  }),
});
server.on("request", provider.callback());
console.log(JSON.stringify({ issuer }));
