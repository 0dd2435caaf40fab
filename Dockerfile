# One image for the API and the workers (the command differs).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /srv/priorforge
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY prompts ./prompts
COPY migrations ./migrations
RUN pip install --no-cache-dir -e '.[s3]'
RUN useradd --system --uid 10001 priorforge
USER priorforge
EXPOSE 8000
CMD ["priorforge", "serve", "--host", "0.0.0.0", "--port", "8000"]
