import { h } from "../dom";

/** The sign-in form; `message` says why the person is here (signed out, session ended). */
export function signInView(message: string, submit: (email: string, password: string) => Promise<void>): HTMLElement {
  const error = h("p", { class: "error", role: "alert", "data-role": "signin-error" });
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "signin" },
    h("h1", null, "Nephrocare"),
    h("p", { class: "muted" }, "Dialysis unit dashboard"),
    message && h("p", { class: "notice", "data-role": "signin-notice" }, message),
    h("label", null, "E-mail", email),
    h("label", null, "Password", password),
    button,
    error,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    button.disabled = true;
    error.textContent = "";
    submit(email.value.trim(), password.value)
      .catch((err) => {
        error.textContent = (err as Error).message;
      })
      .finally(() => {
        button.disabled = false;
      });
  });
  queueMicrotask(() => email.focus());
  return form;
}
