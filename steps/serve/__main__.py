from steps.serve.cli import console_script

console_script()
