// Passkeys in the browser: the auth service sends WebAuthn's options in their JSON form
// (`{"publicKey": {...}}`, binary values as base64url); the browser's own helpers turn them
// into what `navigator.credentials` takes, and its answer back into JSON
// (`PublicKeyCredential.parse*OptionsFromJSON` and `toJSON`, WebAuthn Level 3).

/** Members that are null are left out (WebAuthn's dictionaries take no null). */
function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => [k, withoutNulls(v)]),
    );
  }
  return value;
}

function publicKey<T>(options: unknown): T {
  return withoutNulls((options as { publicKey: unknown }).publicKey) as T;
}

/** Whether `err` is the user (or the browser) ending the passkey prompt. */
export function cancelled(err: unknown): boolean {
  return err instanceof DOMException && (err.name === "NotAllowedError" || err.name === "AbortError");
}

/** Whether this browser can use passkeys the way this page does. */
export function supported(): boolean {
  return (
    typeof PublicKeyCredential !== "undefined" &&
    typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function"
  );
}

/** A new passkey for the options of `.../passkeys/register/start`: the answer to send. */
export async function create(options: unknown): Promise<Record<string, unknown>> {
  const credential = await navigator.credentials.create({
    publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(
      publicKey<PublicKeyCredentialCreationOptionsJSON>(options),
    ),
  });
  if (!(credential instanceof PublicKeyCredential)) throw new Error("no passkey was made");
  return credential.toJSON() as unknown as Record<string, unknown>;
}

/** The user's passkey answering the options of `/v1/auth/passkey/start`. */
export async function get(options: unknown): Promise<Record<string, unknown>> {
  const credential = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(
      publicKey<PublicKeyCredentialRequestOptionsJSON>(options),
    ),
  });
  if (!(credential instanceof PublicKeyCredential)) throw new Error("no passkey answered");
  return credential.toJSON() as unknown as Record<string, unknown>;
}
