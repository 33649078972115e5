"""The original design, rebuilt as the baseline: awaited insert, then LangChain's astream
through FastAPI's StreamingResponse as `data: <token>` lines.

    OPENAI_BASE_URL=... BASELINE_DB=sqlite+aiosqlite:///x.db uvicorn bench.baseline_app:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Header
from fastapi.responses import StreamingResponse
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from sqlalchemy import String, Text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Log(Base):
    __tablename__ = "translate_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    script_id: Mapped[str | None] = mapped_column(String(128))
    lang: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)


engine = create_async_engine(os.environ.get("BASELINE_DB", "sqlite+aiosqlite:///./baseline.db"))
Session = async_sessionmaker(engine)
llm = ChatOpenAI(
    model="fake-model",
    streaming=True,
    api_key=os.environ.get("OPENAI_API_KEY", "sk-none"),  # type: ignore[arg-type]
    base_url=os.environ["OPENAI_BASE_URL"],
)
app = FastAPI()


@app.on_event("startup")
async def create_tables() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


class TranslateIn(BaseModel):
    lang: str
    message: str


@app.post("/translate")
async def translate(body: TranslateIn, x_script_id: str | None = Header(None)) -> StreamingResponse:
    async with Session() as session:
        session.add(Log(script_id=x_script_id, lang=body.lang, message=body.message))
        await session.commit()

    async def tokens() -> AsyncIterator[str]:
        async for chunk in llm.astream(f"Translate into {body.lang}: {body.message}"):
            yield f"data: {chunk.content}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(tokens(), media_type="text/event-stream")
