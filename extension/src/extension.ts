// Entry point: wires the real vscode API and vscode-languageclient into Penwright.

import * as vscode from "vscode";
import { LanguageClient, type LanguageClientOptions, type ServerOptions } from "vscode-languageclient/node";
import { Penwright, type ClientFactory } from "./penwright";

let instance: Penwright | undefined;

export function languageClientFactory(output: vscode.LogOutputChannel): ClientFactory {
  return (cmd, languages, init) => {
    const server: ServerOptions = { command: cmd.command, args: cmd.args, options: { env: { ...process.env } } };
    const options: LanguageClientOptions = {
      documentSelector: languages.map((language) => ({ scheme: "file", language })),
      initializationOptions: init,
      outputChannel: output,
    };
    return new LanguageClient("penwright", "Penwright", server, options);
  };
}

export async function activate(context: vscode.ExtensionContext): Promise<Penwright> {
  const output = vscode.window.createOutputChannel("Penwright", { log: true });
  context.subscriptions.push(output);
  instance = new Penwright(vscode, context.extension.packageJSON, languageClientFactory(output));
  instance.register(context);
  await instance.start();
  return instance;
}

export async function deactivate(): Promise<void> {
  await instance?.stop();
  instance = undefined;
}
