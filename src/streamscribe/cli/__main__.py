from streamscribe.cli.main import app

app()
